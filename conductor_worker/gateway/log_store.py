"""Agent job logs, outside workflow history: each attempt's sequenced lines, stored once and in order.

The gateway appends what agents send (`AppendLogs`); `conductor logs` and the job's status read it back.
A store only ever appends the line that comes next (seq = stored + 1): a re-sent line is dropped, and
a batch that skips ahead is stored up to the gap, so the ack (`append`'s return) tells the agent exactly
where to resume. An attempt's log is complete once the agent's final batch is stored.

Each attempt's stored log is bounded (`max_bytes`, CONDUCTOR_MAX_LOG_BYTES_PER_ATTEMPT): the lines past
the limit are acknowledged, so the agent moves on, and counted, not stored; `dropped()` says how many,
and the job's tail and `conductor logs` end with a line saying so.

Two implementations: a local directory (the default, conductor_worker/gateway/local_log_store.py) and
S3 (for conductors on several machines, conductor_worker/gateway/s3_log_store.py). Both store each
append as a record of the block's message (conductor_worker/gateway/log_records.py); logs stored
before that as JSON lines (conductor_worker/gateway/json_lines_log.py) are still read.
"""

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence

from pydantic import BaseModel

from conductor_worker.config import Settings
from conductor_worker.gateway.log_blocks import LogBlock
from conductor_worker.gateway.log_records import encode_record
from contracts.logs import LogLine

DEFAULT_MAX_BYTES = 256 * 2**20


class Dropped(BaseModel):
    """The lines of an attempt past the store's limit: how many, and the seq the count runs through."""

    count: int = 0
    through_seq: int = 0
    limit_bytes: int = 0


def split_at_limit(
    new: LogBlock, used_bytes: int, limit: int, dropped: Dropped
) -> tuple[bytes, int, Dropped]:
    """(the record of the lines that fit, the seq of the last one kept (0: none), the updated drop count).

    Once over the limit, every later line is dropped. The usual case is one check for the whole block;
    the block that crosses the limit is cut where its record fits (a binary search over its lines).
    """
    if not len(new):
        return b"", 0, dropped
    record = encode_record(new) if dropped.count == 0 else b""
    if record and used_bytes + len(record) <= limit:
        return record, new.last_seq, dropped
    fits, record = 0, b""
    if dropped.count == 0:
        low, high = 0, len(new) - 1  # the most lines whose record fits lies in [low, high]
        while low < high:
            middle = (low + high + 1) // 2
            if used_bytes + len(encode_record(cut_block(new, middle))) <= limit:
                low = middle
            else:
                high = middle - 1
        fits = low
        record = encode_record(cut_block(new, fits)) if fits else b""
    counted = Dropped(count=dropped.count + len(new) - fits, through_seq=new.last_seq, limit_bytes=limit)
    return record, new.first_seq + fits - 1 if fits else 0, counted


def cut_block(block: LogBlock, n: int) -> LogBlock:
    """The block's first `n` lines."""
    return LogBlock(block.first_seq, block.texts[:n], block.ts[:n], _take_runs(block.runs, n))


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


def _take_runs(runs: Sequence[tuple[str, str, int]], n: int) -> list[tuple[str, str, int]]:
    out = []
    for step, stream, count in runs:
        if n <= 0:
            break
        out.append((step, stream, min(count, n)))
        n -= count
    return out


def _skip_runs(runs: Sequence[tuple[str, str, int]], skip: int) -> list[tuple[str, str, int]]:
    out = []
    for step, stream, n in runs:
        take = n - min(skip, n)
        skip -= n - take
        if take:
            out.append((step, stream, take))
    return out


def lowest_seq(lines: Sequence[LogLine] | LogBlock) -> int:
    if isinstance(lines, LogBlock):
        return lines.first_seq
    return min(line.seq for line in lines)


def highest_seq(lines: Sequence[LogLine] | LogBlock) -> int:
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


def open_log_store(settings: Settings) -> LogStore:
    """The store the settings name: the local directory by default, or an S3 bucket."""
    # Imported here: each store's module imports this one (LogStore).
    from conductor_worker.gateway.local_log_store import LocalLogStore

    if settings.log_store == "s3":
        import boto3

        from conductor_worker.gateway.s3_log_store import S3LogStore

        if not settings.logs_s3_bucket:
            raise ValueError("CONDUCTOR_LOG_STORE=s3 needs CONDUCTOR_LOGS_S3_BUCKET")
        s3 = boto3.client(
            "s3", region_name=settings.aws_region, endpoint_url=settings.aws_endpoint_url or None
        )
        return S3LogStore(
            s3, settings.logs_s3_bucket, settings.logs_s3_prefix, settings.max_log_bytes_per_attempt
        )
    return LocalLogStore(settings.logs_path, settings.max_log_bytes_per_attempt)
