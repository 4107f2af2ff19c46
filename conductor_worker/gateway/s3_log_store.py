"""The S3 log store: each append an object, for conductors on several machines."""

import threading
from collections.abc import Sequence

from conductor_worker.gateway.json_lines_log import parse_json_lines
from conductor_worker.gateway.log_blocks import LogBlock
from conductor_worker.gateway.log_records import decode_lines
from conductor_worker.gateway.log_store import (
    DEFAULT_MAX_BYTES,
    Dropped,
    LogStore,
    block_to_store,
    highest_seq,
    lowest_seq,
    split_at_limit,
)
from contracts.ids import safe_name
from contracts.logs import LogLine


class S3LogStore(LogStore):
    """`<prefix><job id as a file name>/attempt-<n>/<first seq>-<last seq>.record`, one object per append.

    Objects can't be appended to, so each stored batch is its own object, named by its seq range; the
    store's position is the highest `last seq` among them (cached, re-listed when a batch doesn't start
    right after it). Reads merge the objects by seq and skip seqs already read, so even two gateways
    racing on one attempt (an agent that switched conductors while a call was in flight) never show a
    line twice. Objects named `.jsonl` (JSON lines, before records) are read the same way.
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
                stem, dot, suffix = item["Key"][len(prefix) :].rpartition(".")
                if dot and suffix in ("record", "jsonl"):
                    first, _, last = stem.partition("-")
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
            if stored is None or (len(lines) and lowest_seq(lines) != stored + 1):
                chunks = self._sized_chunks(job_id, attempt)
                self._bytes[key] = sum(size for *_, size in chunks)
                self._dropped[key] = self.dropped(job_id, attempt)
                stored = max(max((c[1] for c in chunks), default=0), self._dropped[key].through_seq)
            new = block_to_store(lines, stored)
            dropped = self._dropped.get(key, Dropped())
            data, kept, now_dropped = split_at_limit(new, self._bytes.get(key, 0), self.max_bytes, dropped)
            if kept:
                name = f"{new.first_seq:012d}-{kept:012d}.record"
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
        if final and len(lines) and stored >= highest_seq(lines):
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
            lines = (
                parse_json_lines(body, after_seq) if key.endswith(".jsonl") else decode_lines(body, after_seq)
            )
            if lines:
                out.extend(lines)
                after_seq = lines[-1].seq
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
