"""The local log store: each attempt's log a file of records in a directory of the conductor's state."""

import fcntl
import os
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from conductor_worker.gateway.json_lines_log import last_json_lines, read_json_lines
from conductor_worker.gateway.log_blocks import LogBlock
from conductor_worker.gateway.log_records import decode_lines, records, records_backwards, whole_end
from conductor_worker.gateway.log_store import (
    DEFAULT_MAX_BYTES,
    Dropped,
    LogStore,
    block_to_store,
    highest_seq,
    split_at_limit,
)
from contracts.ids import safe_name
from contracts.logs import LogLine
from stores.job_store import write_atomic


class LocalLogStore(LogStore):
    """`<root>/<job id as a file name>/attempt-<n>.records`, plus `attempt-<n>.complete` once complete.

    Appends hold an exclusive lock on the file and are fsynced before the ack: an acked line survives
    a conductor crash, and two processes serving one state dir (a deploy's hand-over) don't interleave.
    A log begun as JSON lines (`attempt-<n>.jsonl`, before records) is read first and continued as records.
    """

    def __init__(self, root: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.root = root
        self.max_bytes = max_bytes
        # (job, attempt) -> (seq, byte offset of the records after it): `conductor logs --follow` reads on.
        self._cursors: dict[tuple[str, int], tuple[int, int]] = {}
        # (job, attempt) -> (the file's size, the seq it is stored through) as this store last wrote it:
        # while the size is unchanged, the next append need not read the last record back.
        self._ends: dict[tuple[str, int], tuple[int, int]] = {}

    def path(self, job_id: str, attempt: int) -> Path:
        return self.root / safe_name(job_id) / f"attempt-{attempt}.records"

    def json_lines_path(self, job_id: str, attempt: int) -> Path:
        return self.path(job_id, attempt).with_suffix(".jsonl")

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
        key = (job_id, attempt)
        path = self.path(job_id, attempt)
        if key not in self._ends:
            path.parent.mkdir(parents=True, exist_ok=True)
        acks: list[int] = []
        complete = 0
        with path.open("a+b") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            before = dropped = self.dropped(job_id, attempt)
            in_file = self._stored_in_file(f, job_id, attempt)
            stored = max(in_file, dropped.through_seq)
            used = f.tell() + self._json_lines_size(job_id, attempt)
            written = False
            for lines, final in group:
                new = block_to_store(lines, stored)
                record, kept, dropped = split_at_limit(new, used, self.max_bytes, dropped)
                if record:
                    f.write(record)
                    used += len(record)
                    in_file = kept
                    written = True
                if len(new):
                    stored = new.last_seq
                acks.append(stored)
                if final and len(lines) and stored >= highest_seq(lines):
                    complete = stored
            if written:
                f.flush()
                os.fsync(f.fileno())
            self._ends[key] = (f.seek(0, os.SEEK_END), in_file)
            if dropped != before:
                write_atomic(self._dropped_path(job_id, attempt), dropped.model_dump_json().encode())
        if complete:
            self._complete_path(job_id, attempt).write_text(f"{complete}\n")
        return acks

    def _stored_in_file(self, f: IO[bytes], job_id: str, attempt: int) -> int:
        """The seq the attempt's files hold lines through, the file's position left at its end. A record
        torn by a crash mid-write (never acked) is cut off first: it is stored again when it is re-sent."""
        size = f.seek(0, os.SEEK_END)
        known = self._ends.get((job_id, attempt))
        if known and known[0] == size:
            return known[1]  # as this store left it: no need to read the last record back
        end = whole_end(f)
        if end < size:
            f.truncate(end)
        last = next(records_backwards(f, end), None)
        f.seek(end)
        if last:
            return last[0].last_seq
        json_lines = last_json_lines(self.json_lines_path(job_id, attempt), 1)
        return json_lines[-1].seq if json_lines else 0

    def _json_lines_size(self, job_id: str, attempt: int) -> int:
        try:
            return self.json_lines_path(job_id, attempt).stat().st_size
        except FileNotFoundError:
            return 0

    def read(self, job_id: str, attempt: int, after_seq: int = 0) -> list[LogLine]:
        key = (job_id, attempt)
        seq, offset = self._cursors.get(key, (0, 0))
        if seq != after_seq:
            seq, offset = 0, 0
        out = read_json_lines(self.json_lines_path(job_id, attempt), after_seq)
        try:
            f = self.path(job_id, attempt).open("rb")
        except FileNotFoundError:
            return out
        with f:
            for info, record in records(f, offset):  # up to a record being written right now
                offset = info.end
                if info.last_seq > after_seq:
                    out.extend(decode_lines(record, max(after_seq, out[-1].seq if out else 0)))
        self._cursors[key] = (out[-1].seq if out else after_seq, offset)
        return out

    def is_complete(self, job_id: str, attempt: int) -> bool:
        return self._complete_path(job_id, attempt).exists()

    def attempts(self, job_id: str) -> list[int]:
        directory = self.root.joinpath(safe_name(job_id))
        found = [*directory.glob("attempt-*.records"), *directory.glob("attempt-*.jsonl")]
        return sorted({int(p.stem.removeprefix("attempt-")) for p in found})

    def _last_lines(self, job_id: str, attempt: int, n: int) -> list[LogLine]:
        newest: list[bytes] = []
        count = 0
        try:
            f = self.path(job_id, attempt).open("rb")
        except FileNotFoundError:
            pass
        else:
            with f:
                fcntl.flock(f, fcntl.LOCK_SH)  # not while an append writes: its record is not whole yet
                for info, record in records_backwards(f, whole_end(f)):
                    newest.append(record)
                    count += info.count
                    if count >= n:
                        break
        lines = [line for record in reversed(newest) for line in decode_lines(record)]
        if count < n:
            lines = last_json_lines(self.json_lines_path(job_id, attempt), n - count) + lines
        return lines[-n:]
