"""Logs stored as JSON lines, one `LogLine` a line: how the stores kept logs before log records.

Read only: a conductor upgraded in place keeps the logs it wrote before (`attempt-<n>.jsonl` files,
`.jsonl` objects in S3) and appends what comes next as records (conductor_worker/gateway/log_records.py).
"""

import os
from pathlib import Path
from typing import IO

from contracts.logs import LogLine

_BLOCK = 64 * 1024


def parse_json_lines(data: bytes, after_seq: int = 0) -> list[LogLine]:
    """The lines with seq > after_seq of whole JSON lines (a torn last line, never acked, is skipped)."""
    whole = data[: data.rfind(b"\n") + 1]
    out = []
    for raw in whole.splitlines():
        line = LogLine.model_validate_json(raw)
        if line.seq > after_seq:
            out.append(line)
    return out


def read_json_lines(path: Path, after_seq: int = 0) -> list[LogLine]:
    try:
        return parse_json_lines(path.read_bytes(), after_seq)
    except FileNotFoundError:
        return []


def last_json_lines(path: Path, n: int) -> list[LogLine]:
    """The last `n` lines of the file, read backwards (a log may be gigabytes)."""
    try:
        f = path.open("rb")
    except FileNotFoundError:
        return []
    with f:
        return [LogLine.model_validate_json(raw) for raw in _last_raw_lines(f, n)]


def _last_raw_lines(f: IO[bytes], n: int) -> list[bytes]:
    pos = f.seek(0, os.SEEK_END)
    blocks: list[bytes] = []
    newlines = 0
    while pos > 0 and newlines <= n:
        step = min(_BLOCK, pos)
        pos -= step
        f.seek(pos)
        blocks.append(f.read(step))
        newlines += blocks[-1].count(b"\n")
    data = b"".join(reversed(blocks))
    lines = data[: data.rfind(b"\n") + 1].splitlines()  # a torn last line was never acked
    if pos > 0:
        lines = lines[1:]  # it may have started before the first block we read
    return lines[-n:] if n > 0 else []
