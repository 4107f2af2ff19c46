"""Agent job logs, outside workflow history: each attempt's sequenced lines, stored once and in order.

The gateway appends what agents send (`AppendLogs`); `conductor logs` and the job's status read it back.
A store only ever appends the line that comes next (seq = stored + 1): a re-sent line is dropped, and
a batch that skips ahead is stored up to the gap, so the ack (`append`'s return) tells the agent exactly
where to resume. An attempt's log is complete once the agent's final batch is stored.

Each attempt's stored log is bounded (`max_bytes`, CONDUCTOR_MAX_LOG_BYTES_PER_ATTEMPT): the lines past
the limit are acknowledged, so the agent moves on, and counted, not stored; `dropped()` says how many,
and the job's tail and `conductor logs` end with a line saying so.

Two implementations: a local directory (the default) and S3 (for conductors on several machines).
"""

import fcntl
import json
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO

from pydantic import BaseModel

from conductor_worker.config import Settings
from conductor_worker.gateway.log_blocks import LogBlock
from contracts.ids import safe_name
from contracts.logs import LogLine
from stores.job_store import write_atomic

_BLOCK = 64 * 1024
DEFAULT_MAX_BYTES = 256 * 2**20


class Dropped(BaseModel):
    """The lines of an attempt past the store's limit: how many, and the seq the count runs through."""

    count: int = 0
    through_seq: int = 0
    limit_bytes: int = 0


def split_at_limit(
    new: LogBlock, used_bytes: int, limit: int, dropped: Dropped
) -> tuple[bytes, int, Dropped]:
    """(the encoded lines that fit, the seq of the last one kept (0: none), the updated drop count).

    Once over the limit, every later line is dropped. The usual case is one check for the whole block.
    """
    data = new.encoded()
    if dropped.count == 0 and used_bytes + len(data) <= limit:
        return data, new.last_seq if len(new) else 0, dropped
    kept: list[bytes] = []
    kept_through = 0
    for seq, raw in enumerate(data.splitlines(keepends=True), start=new.first_seq):
        if dropped.count == 0 and used_bytes + len(raw) <= limit:
            kept.append(raw)
            kept_through = seq
            used_bytes += len(raw)
        else:
            dropped = Dropped(count=dropped.count + 1, through_seq=seq, limit_bytes=limit)
    return b"".join(kept), kept_through, dropped


def dropped_note(dropped: Dropped) -> LogLine:
    """The line a log past its limit ends with, in the job's tail and in `conductor logs`."""
    return LogLine(
        seq=dropped.through_seq,
        stream="conductor",
        text=(
            f"{dropped.count} more line(s) were counted, not stored: this attempt's log reached its "
            f"limit of {dropped.limit_bytes} bytes (CONDUCTOR_MAX_LOG_BYTES_PER_ATTEMPT)"
        ),
    )


def lines_to_store(lines: Iterable[LogLine], stored_through: int) -> list[LogLine]:
    """The lines that continue a log stored up to `stored_through`, stopping at the first gap."""
    out: list[LogLine] = []
    expected = stored_through + 1
    for line in sorted(lines, key=lambda line: line.seq):
        if line.seq < expected:
            continue  # stored already: a batch re-sent after its ack was lost
        if line.seq > expected:
            break  # a gap: the ack stops before it and the agent re-sends from there
        out.append(line)
        expected += 1
    return out


def block_to_store(lines: Sequence[LogLine] | LogBlock, stored_through: int) -> LogBlock:
    """What continues a log stored up to `stored_through`, as one block (empty: nothing does).

    A block that starts past the next seq leaves a gap and stores nothing; one that overlaps what is
    stored (re-sent after a lost ack) stores only its new lines.
    """
    if not isinstance(lines, LogBlock):
        return LogBlock.from_lines(lines_to_store(lines, stored_through))
    skip = stored_through + 1 - lines.first_seq
    if skip < 0 or skip >= len(lines):
        return LogBlock(stored_through + 1, (), (), ())
    if skip == 0:
        return lines
    return LogBlock(stored_through + 1, lines.texts[skip:], lines.ts[skip:], _skip_runs(lines.runs, skip))


def _skip_runs(runs: Sequence[tuple[str, str, int]], skip: int) -> list[tuple[str, str, int]]:
    out = []
    for step, stream, n in runs:
        take = n - min(skip, n)
        skip -= n - take
        if take:
            out.append((step, stream, take))
    return out


def _lowest_seq(lines: Sequence[LogLine] | LogBlock) -> int:
    if isinstance(lines, LogBlock):
        return lines.first_seq
    return min(line.seq for line in lines)


def _highest_seq(lines: Sequence[LogLine] | LogBlock) -> int:
    if isinstance(lines, LogBlock):
        return lines.last_seq
    return max((line.seq for line in lines), default=0)


class LogStore(ABC):
    @abstractmethod
    def append(
        self, job_id: str, attempt: int, lines: Sequence[LogLine] | LogBlock, final: bool = False
    ) -> int:
        """Store what continues the log; return the highest seq stored with nothing missing below it.

        `lines`: consecutive or not (a batch), or a block of consecutive lines.
        `final`: the batch ends with the attempt's last line; once that line is stored, the log is complete.
        """

    def append_group(
        self, job_id: str, attempt: int, group: Sequence[tuple[Sequence[LogLine] | LogBlock, bool]]
    ) -> list[int]:
        """`append` for each (lines, final) in order; the acks in the same order."""
        return [self.append(job_id, attempt, lines, final) for lines, final in group]

    @abstractmethod
    def read(self, job_id: str, attempt: int, after_seq: int = 0) -> list[LogLine]:
        """The attempt's lines with seq > after_seq, in order."""

    @abstractmethod
    def is_complete(self, job_id: str, attempt: int) -> bool: ...

    @abstractmethod
    def attempts(self, job_id: str) -> list[int]:
        """The attempts of the job that have a log, ascending."""

    @abstractmethod
    def _last_lines(self, job_id: str, attempt: int, n: int) -> list[LogLine]: ...

    @abstractmethod
    def dropped(self, job_id: str, attempt: int) -> Dropped:
        """The attempt's lines past the limit (count 0: none)."""

    def tail(self, job_id: str, n: int) -> list[LogLine]:
        """The last `n` lines of the job's latest attempt (for the job's `status`), with the drop note."""
        attempts = self.attempts(job_id)
        if not attempts or n <= 0:
            return []
        lines = self._last_lines(job_id, attempts[-1], n)
        dropped = self.dropped(job_id, attempts[-1])
        return (lines + [dropped_note(dropped)])[-n:] if dropped.count else lines


class LocalLogStore(LogStore):
    """`<root>/<job id as a file name>/attempt-<n>.jsonl`, plus `attempt-<n>.complete` once complete.

    Appends hold an exclusive lock on the file and are fsynced before the ack: an acked line survives
    a conductor crash, and two processes serving one state dir (a deploy's hand-over) don't interleave.
    """

    def __init__(self, root: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.root = root
        self.max_bytes = max_bytes
        # (job, attempt) -> (seq, byte offset after it): `conductor logs --follow` reads on from there.
        self._cursors: dict[tuple[str, int], tuple[int, int]] = {}

    def path(self, job_id: str, attempt: int) -> Path:
        return self.root / safe_name(job_id) / f"attempt-{attempt}.jsonl"

    def _complete_path(self, job_id: str, attempt: int) -> Path:
        return self.path(job_id, attempt).with_suffix(".complete")

    def _dropped_path(self, job_id: str, attempt: int) -> Path:
        return self.path(job_id, attempt).with_suffix(".dropped")

    def dropped(self, job_id: str, attempt: int) -> Dropped:
        try:
            return Dropped.model_validate_json(self._dropped_path(job_id, attempt).read_bytes())
        except FileNotFoundError:
            return Dropped()

    def append(
        self, job_id: str, attempt: int, lines: Sequence[LogLine] | LogBlock, final: bool = False
    ) -> int:
        return self.append_group(job_id, attempt, [(lines, final)])[0]

    def append_group(
        self, job_id: str, attempt: int, group: Sequence[tuple[Sequence[LogLine] | LogBlock, bool]]
    ) -> list[int]:
        """Several appends in order under one lock and one fsync (a group commit): the blocks an agent
        keeps in flight cost one disk flush, not one each. Every ack is returned after the fsync."""
        path = self.path(job_id, attempt)
        path.parent.mkdir(parents=True, exist_ok=True)
        acks: list[int] = []
        complete = 0
        with path.open("a+b") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            before = dropped = self.dropped(job_id, attempt)
            stored = max(_last_seq(f), dropped.through_seq)
            written = False
            for lines, final in group:
                new = block_to_store(lines, stored)
                data, kept, dropped = split_at_limit(new, f.seek(0, os.SEEK_END), self.max_bytes, dropped)
                if kept:
                    f.write(data)
                    written = True
                if len(new):
                    stored = new.last_seq
                acks.append(stored)
                if final and len(lines) and stored >= _highest_seq(lines):
                    complete = stored
            if written:
                f.flush()
                os.fsync(f.fileno())
            if dropped != before:
                write_atomic(self._dropped_path(job_id, attempt), dropped.model_dump_json().encode())
        if complete:
            self._complete_path(job_id, attempt).write_text(f"{complete}\n")
        return acks

    def read(self, job_id: str, attempt: int, after_seq: int = 0) -> list[LogLine]:
        path = self.path(job_id, attempt)
        key = (job_id, attempt)
        seq, offset = self._cursors.get(key, (0, 0))
        if seq != after_seq:
            seq, offset = 0, 0
        out: list[LogLine] = []
        try:
            f = path.open("rb")
        except FileNotFoundError:
            return out
        with f:
            f.seek(offset)
            for raw in f:
                if not raw.endswith(b"\n"):
                    break  # being written right now; the next read gets it whole
                offset += len(raw)
                line = LogLine.model_validate_json(raw)
                if line.seq > after_seq:
                    out.append(line)
        self._cursors[key] = (out[-1].seq if out else after_seq, offset)
        return out

    def is_complete(self, job_id: str, attempt: int) -> bool:
        return self._complete_path(job_id, attempt).exists()

    def attempts(self, job_id: str) -> list[int]:
        found = self.root.joinpath(safe_name(job_id)).glob("attempt-*.jsonl")
        return sorted(int(p.stem.removeprefix("attempt-")) for p in found)

    def _last_lines(self, job_id: str, attempt: int, n: int) -> list[LogLine]:
        try:
            f = self.path(job_id, attempt).open("rb")
        except FileNotFoundError:
            return []
        with f:
            raw = _last_raw_lines(f, n)
        return [LogLine.model_validate_json(line) for line in raw]


def _last_raw_lines(f: IO[bytes], n: int) -> list[bytes]:
    """The last `n` complete lines of the file, read backwards (a log may be gigabytes)."""
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
    return lines[-n:]


def _last_seq(f: IO[bytes]) -> int:
    """The seq of the file's last line, after cutting off a torn one (a crash mid-write: never acked)."""
    size = f.seek(0, os.SEEK_END)
    if size:
        f.seek(size - 1)
        if f.read(1) != b"\n":
            f.truncate(_end_of_last_line(f, size))
    last = _last_raw_lines(f, 1)
    return json.loads(last[0])["seq"] if last else 0


def _end_of_last_line(f: IO[bytes], size: int) -> int:
    pos = size
    while pos > 0:
        step = min(_BLOCK, pos)
        pos -= step
        f.seek(pos)
        newline = f.read(step).rfind(b"\n")
        if newline >= 0:
            return pos + newline + 1
    return 0


class S3LogStore(LogStore):
    """`<prefix><job id as a file name>/attempt-<n>/<first seq>-<last seq>.jsonl`, one object per append.

    Objects can't be appended to, so each stored batch is its own object, named by its seq range; the
    store's position is the highest `last seq` among them (cached, re-listed when a batch doesn't start
    right after it). Reads merge the objects by seq and skip seqs already read, so even two gateways
    racing on one attempt (an agent that switched conductors while a call was in flight) never show a
    line twice.
    """

    def __init__(self, s3, bucket: str, prefix: str = "logs/", max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._prefix = prefix
        self.max_bytes = max_bytes
        self._stored: dict[tuple[str, int], int] = {}
        # (job, attempt) -> bytes stored and lines dropped; re-read whenever the position is re-listed.
        self._bytes: dict[tuple[str, int], int] = {}
        self._dropped: dict[tuple[str, int], Dropped] = {}
        self._locks: dict[tuple[str, int], threading.Lock] = {}
        self._locks_lock = threading.Lock()

    def _attempt_prefix(self, job_id: str, attempt: int) -> str:
        return f"{self._prefix}{safe_name(job_id)}/attempt-{attempt}/"

    def _chunks(self, job_id: str, attempt: int) -> list[tuple[int, int, str]]:
        """(first seq, last seq, key) of every stored batch, in seq order."""
        return [chunk[:3] for chunk in self._sized_chunks(job_id, attempt)]

    def _sized_chunks(self, job_id: str, attempt: int) -> list[tuple[int, int, str, int]]:
        prefix = self._attempt_prefix(job_id, attempt)
        chunks = []
        for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=self._bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                name = item["Key"][len(prefix) :]
                if name.endswith(".jsonl"):
                    first, _, last = name.removesuffix(".jsonl").partition("-")
                    chunks.append((int(first), int(last), item["Key"], int(item["Size"])))
        return sorted(chunks)

    def dropped(self, job_id: str, attempt: int) -> Dropped:
        key = self._attempt_prefix(job_id, attempt) + "dropped.json"
        try:
            return Dropped.model_validate_json(
                self._s3.get_object(Bucket=self._bucket, Key=key)["Body"].read()
            )
        except self._s3.exceptions.NoSuchKey:
            return Dropped()

    def append(
        self, job_id: str, attempt: int, lines: Sequence[LogLine] | LogBlock, final: bool = False
    ) -> int:
        key = (job_id, attempt)
        with self._locks_lock:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            stored = self._stored.get(key)
            if stored is None or (len(lines) and _lowest_seq(lines) != stored + 1):
                chunks = self._sized_chunks(job_id, attempt)
                self._bytes[key] = sum(size for *_, size in chunks)
                self._dropped[key] = self.dropped(job_id, attempt)
                stored = max(max((c[1] for c in chunks), default=0), self._dropped[key].through_seq)
            new = block_to_store(lines, stored)
            dropped = self._dropped.get(key, Dropped())
            data, kept, now_dropped = split_at_limit(new, self._bytes.get(key, 0), self.max_bytes, dropped)
            if kept:
                name = f"{new.first_seq:012d}-{kept:012d}.jsonl"
                self._s3.put_object(
                    Bucket=self._bucket, Key=self._attempt_prefix(job_id, attempt) + name, Body=data
                )
                self._bytes[key] = self._bytes.get(key, 0) + len(data)
            if now_dropped != dropped:
                self._s3.put_object(
                    Bucket=self._bucket,
                    Key=self._attempt_prefix(job_id, attempt) + "dropped.json",
                    Body=now_dropped.model_dump_json().encode(),
                )
                self._dropped[key] = now_dropped
            if len(new):
                stored = new.last_seq
            self._stored[key] = stored
        if final and len(lines) and stored >= _highest_seq(lines):
            self._s3.put_object(
                Bucket=self._bucket, Key=self._attempt_prefix(job_id, attempt) + "complete", Body=b""
            )
        return stored

    def _read_chunks(self, chunks: list[tuple[int, int, str]], after_seq: int) -> list[LogLine]:
        out: list[LogLine] = []
        for _, last, key in chunks:
            if last <= after_seq:
                continue
            body = self._s3.get_object(Bucket=self._bucket, Key=key)["Body"].read()
            for raw in body.splitlines():
                line = LogLine.model_validate_json(raw)
                if line.seq > after_seq:
                    out.append(line)
                    after_seq = line.seq
        return out

    def read(self, job_id: str, attempt: int, after_seq: int = 0) -> list[LogLine]:
        return self._read_chunks(self._chunks(job_id, attempt), after_seq)

    def is_complete(self, job_id: str, attempt: int) -> bool:
        key = self._attempt_prefix(job_id, attempt) + "complete"
        return "Contents" in self._s3.list_objects_v2(Bucket=self._bucket, Prefix=key, MaxKeys=1)

    def attempts(self, job_id: str) -> list[int]:
        prefix = f"{self._prefix}{safe_name(job_id)}/"
        found = []
        pages = self._s3.get_paginator("list_objects_v2").paginate(
            Bucket=self._bucket, Prefix=prefix, Delimiter="/"
        )
        for page in pages:
            for common in page.get("CommonPrefixes", []):
                name = common["Prefix"][len(prefix) :].rstrip("/")
                if name.startswith("attempt-"):
                    found.append(int(name.removeprefix("attempt-")))
        return sorted(found)

    def _last_lines(self, job_id: str, attempt: int, n: int) -> list[LogLine]:
        chunks = self._chunks(job_id, attempt)
        # Enough of the newest objects to hold n lines, then read them in order.
        start, count = len(chunks), 0
        while start > 0 and count < n:
            start -= 1
            count += chunks[start][1] - chunks[start][0] + 1
        return self._read_chunks(chunks[start:], 0)[-n:]


def open_log_store(settings: Settings) -> LogStore:
    """The store the settings name: the local directory by default, or an S3 bucket."""
    if settings.log_store == "s3":
        import boto3

        if not settings.logs_s3_bucket:
            raise ValueError("CONDUCTOR_LOG_STORE=s3 needs CONDUCTOR_LOGS_S3_BUCKET")
        s3 = boto3.client(
            "s3", region_name=settings.aws_region, endpoint_url=settings.aws_endpoint_url or None
        )
        return S3LogStore(
            s3, settings.logs_s3_bucket, settings.logs_s3_prefix, settings.max_log_bytes_per_attempt
        )
    return LocalLogStore(settings.logs_path, settings.max_log_bytes_per_attempt)
