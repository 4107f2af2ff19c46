"""The agent's sequenced log: every line numbered, kept until the conductor acks it, sent in order.

`LogBuffer` keeps unacked lines in memory up to a bound and past it in a spill file on disk, so an agent
cut off from its conductor for a long time keeps every line without growing its memory. The spill file
holds the lines as the gateway takes them: chunks of serialized `LogBlock` fields (texts, times, runs).
A spilled block is sent as one read of consecutive chunks behind its first seq (`SpilledBlock`), with no
decoding and no object per line, and stays in the file until acked: a block that must be sent again is
read again. The spill file is bounded too: past it, lines are counted, not kept (and take no seq, so the
log has no gap), and one line saying how many were dropped is logged as soon as there is room again, or
at the end. The thread that sends them is `agent_runtime.log_sender.LogSender`; a line leaves the buffer
only once the conductor acked it.
"""

import json
import os
import threading
import time
from array import array
from bisect import bisect_right
from collections import deque
from collections.abc import Iterator, Sequence
from itertools import accumulate, groupby, islice, repeat
from operator import itemgetter
from pathlib import Path
from typing import IO, NamedTuple

from proto.conductor.v1 import agent_pb2

AGENT_STREAM = "agent"
# 1 MiB: a flood spills to disk almost whole anyway (a step prints faster than the gateway stores), so
# more memory buys little; with the blocks in flight (at most the memory bound: a line stays in memory
# until acked) the agent stays under 60 MiB of RSS.
DEFAULT_MEMORY_BYTES = 1024 * 1024
DEFAULT_SPILL_BYTES = 512 * 1024 * 1024
# Per block: well under gRPC's 4 MiB message limit; four fit in the memory bound, to keep four in flight.
BATCH_LINES = 5000
BATCH_BYTES = 256 * 1024
# Per block read from the spill file: its lines stay on disk while it is in flight (only its bytes are in
# memory, less than half the lines' cost as objects), so these blocks can be twice as big: four in flight
# make the gateway's groups (one fsync each) twice as big for the same memory.
SPILL_BATCH_BYTES = 512 * 1024
# Lines per chunk of the spill file (about 30 KiB of 100-byte lines): a block is whole chunks, but for
# the first one when it is sent again from an ack inside it.
SPILL_CHUNK_LINES = 256
# What a line costs beyond its text (tuple, strings, deque slot): keeps the memory bound honest.
_LINE_OVERHEAD = 120


class Line(NamedTuple):
    seq: int
    step: str
    stream: str
    text: str
    ts: float
    # What the line costs in memory, counted once when it is made: the buffer sums it per batch, per
    # ack and per refill with C-level loops (a method call per line was most of a flood's sending cost).
    cost: int


_cost = itemgetter(5)


def _cost_of(step: str, text: str) -> int:
    return len(text) + len(step) + _LINE_OVERHEAD


def seq_span(batch: Sequence[Line]) -> tuple[int, int]:
    """The first and last seq of a batch from `next_batch` (a spilled block's without decoding it)."""
    if isinstance(batch, SpilledBlock):
        return batch.first_seq, batch.last_seq
    return batch[0].seq, batch[-1].seq


class SpilledBlock(Sequence[Line]):
    """Consecutive spilled lines as the spill file holds them: a `LogBlock`'s fields but `first_seq`
    and `final`, serialized. `message(final)` is the whole block, for the price of a few bytes in front
    (protobuf appends repeated fields met again, so chunks written one after another read as one
    block). Indexing or iterating decodes it into `Line`s, for the rare reader that wants them."""

    __slots__ = ("first_seq", "count", "fields", "_lines")

    def __init__(self, first_seq: int, count: int, fields: bytes) -> None:
        self.first_seq = first_seq
        self.count = count
        self.fields = fields
        self._lines: list[Line] | None = None

    @property
    def last_seq(self) -> int:
        return self.first_seq + self.count - 1

    def message(self, final: bool) -> bytes:
        head = agent_pb2.LogBlock(first_seq=self.first_seq, final=final).SerializeToString()
        return head + self.fields

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index):  # type: ignore[override]
        return self._decoded()[index]

    def __iter__(self) -> Iterator[Line]:
        return iter(self._decoded())

    def _decoded(self) -> list[Line]:
        if self._lines is None:
            block = agent_pb2.LogBlock.FromString(self.fields)
            lines, seq = [], self.first_seq
            texts, ts = iter(block.text), iter(block.ts)
            for run in block.runs:
                for text, when in zip(islice(texts, run.count), islice(ts, run.count), strict=True):
                    lines.append(Line(seq, run.step, run.stream, text, when, _cost_of(run.step, text)))
                    seq += 1
            self._lines = lines
        return self._lines

    def rest(self, first: int) -> "SpilledBlock":
        """Its lines from seq `first` on, as a block of their own (sent again from an ack inside it)."""
        lines = self._decoded()[first - self.first_seq :]
        runs = [
            [step, stream, len(list(run))] for (step, stream), run in groupby(map(itemgetter(1, 2), lines))
        ]
        chunk = _Chunk(first, list(map(itemgetter(3), lines)), list(map(itemgetter(4), lines)), runs, 0)
        return SpilledBlock(first, len(lines), chunk.fields())


class _Chunk(NamedTuple):
    """Consecutive lines as columns: the one being spilled (not in the file yet), or a block's rest."""

    first_seq: int
    texts: list[str]
    ts: list[float]
    runs: list[list]  # [step, stream, n]
    cost: int

    def fields(self) -> bytes:
        runs = [agent_pb2.LogRun(step=step, stream=stream, count=n) for step, stream, n in self.runs]
        return agent_pb2.LogBlock(text=self.texts, ts=self.ts, runs=runs).SerializeToString()


class LogBuffer:
    """Unacked lines, oldest first: in memory, then (once memory is full) in `spill_path`.

    Once a line spills, the ones after it spill too, behind it, until every spilled line is acked and
    the file is removed: the order is always memory, then the file. The file's lines are sent from the
    file (`next_batch` reads them as a `SpilledBlock`) and stay there until acked, so a block in flight
    takes no room in memory and a block that must be sent again is read again.
    """

    def __init__(
        self,
        spill_path: Path,
        memory_bytes: int = DEFAULT_MEMORY_BYTES,
        spill_bytes: int = DEFAULT_SPILL_BYTES,
    ) -> None:
        self._cond = threading.Condition()
        self._memory: deque[Line] = deque()
        self.memory_bytes = 0
        self._bound = memory_bytes
        self._spill_path = spill_path
        # Chunks of serialized columns: a flood that spills costs one encoding per SPILL_CHUNK_LINES
        # lines, not per line, and no object per line; sending them costs a read.
        self._spill_out: IO[bytes] | None = None
        self._spill_from = 0  # the first spilled line's seq while the file is in use (0: not spilling)
        self._spill_acked = 0  # spilled lines acked through this seq
        self._chunk = _Chunk(0, [], [], [], 0)  # the chunk being filled, not in the file yet
        # The file's chunks not wholly acked, from `_head` on: each one's first seq and offset, as
        # arrays (16 bytes a chunk, however long the outage); then the file's end, and the last seq in it.
        self._chunk_seqs = array("q")
        self._chunk_offsets = array("q")
        self._head = 0
        self._spill_end = 0
        self._written_seq = 0
        self.last_seq = 0
        self.final_seq = 0  # set by close(): the seq of the attempt's last line
        self.spilled_total = 0
        self._spill_bound = spill_bytes
        self.dropped = 0  # lines past the spill bound not yet told about
        self.dropped_total = 0

    @property
    def _spilled(self) -> int:
        """Spilled lines not acked yet (in the file or the chunk being filled)."""
        return self.last_seq - self._spill_acked if self._spill_from else 0

    def append(self, step: str, stream: str, text: str) -> int:
        """Number the line and keep it; returns its seq (0: dropped, the spill file is full)."""
        with self._cond:
            if self.final_seq:
                raise RuntimeError("the log is closed")
            if self._spill_full(len(text) + len(step)):
                self.dropped += 1
                self.dropped_total += 1
                return 0
            if self.dropped and not self._spill_full(200):
                self._append("", AGENT_STREAM, self._dropped_text())
            return self._append(step, stream, text)

    def _spill_full(self, size: int) -> bool:
        if not self._spill_from and self.memory_bytes + size + _LINE_OVERHEAD <= self._bound:
            return False  # goes to memory
        return self._spill_end + self._chunk.cost + size + _LINE_OVERHEAD > self._spill_bound

    def _dropped_text(self) -> str:
        text = (
            f"{self.dropped} log line(s) dropped: the unsent log reached the spill file's limit of "
            f"{self._spill_bound} bytes (CONDUCTOR_AGENT_LOG_SPILL_BYTES) while the conductor was away"
        )
        self.dropped = 0
        return text

    def _append(self, step: str, stream: str, text: str) -> int:
        self.last_seq += 1
        cost = _cost_of(step, text)
        if self._spill_from or self.memory_bytes + cost > self._bound:
            self._spill(step, stream, text, cost)
        else:
            self._memory.append(Line(self.last_seq, step, stream, text, time.time(), cost))
            self.memory_bytes += cost
        self._cond.notify_all()
        return self.last_seq

    def close(self, final_text: str) -> int:
        """Append the attempt's last line (the log's end marker); no line can follow it."""
        with self._cond:
            if self.dropped:  # told even if it overruns the bound by one line
                self._append("", AGENT_STREAM, self._dropped_text())
            self.final_seq = self._append("", AGENT_STREAM, final_text)
            return self.final_seq

    @property
    def pending(self) -> int:
        """Lines not acked yet."""
        with self._cond:
            return len(self._memory) + self._spilled

    def next_batch(self, timeout: float, after: int = 0) -> Sequence[Line]:
        """The oldest unacked lines with seq > `after` (without removing them); waits up to `timeout`.

        `after` skips lines already in flight. Lines in memory come as a list (never more than the memory
        bound allows); spilled ones as a `SpilledBlock` read from the file.
        """
        with self._cond:
            self._cond.wait_for(lambda: self.last_seq > after, timeout)
            if self._memory and self._memory[-1].seq > after:
                # Lines are consecutive: the first one after `after` is at a known index. As many lines
                # as fit in BATCH_BYTES (at least one), at most BATCH_LINES.
                start = max(0, after + 1 - self._memory[0].seq)
                sizes = list(accumulate(map(_cost, islice(self._memory, start, start + BATCH_LINES))))
                return list(islice(self._memory, start, start + max(1, bisect_right(sizes, BATCH_BYTES))))
            if self._spill_from and self.last_seq > after:
                return self._spilled_block(max(after + 1, self._spill_acked + 1))
            return []

    def _spilled_block(self, first: int) -> SpilledBlock:
        """Spilled lines from seq `first` on: whole chunks, read from the file at once (the one being
        filled is written first if the reader has caught up with it), up to SPILL_BATCH_BYTES and
        BATCH_LINES; or, from an ack inside a chunk, the rest of that chunk."""
        if first > self._written_seq:
            self._write_chunk()  # the reader caught up with the writer
        assert self._spill_out is not None
        self._spill_out.flush()  # the reads below are of the file, not of the writer's buffer
        seqs, offsets, count = self._chunk_seqs, self._chunk_offsets, len(self._chunk_seqs)
        start = bisect_right(seqs, first, self._head, count) - 1
        end, lines = start + 1, self._next_seq(start + 1) - seqs[start]
        while (
            end < count
            and seqs[start] == first
            and lines + self._next_seq(end + 1) - seqs[end] <= BATCH_LINES
            and self._offset(end + 1) - offsets[start] <= SPILL_BATCH_BYTES
        ):
            lines += self._next_seq(end + 1) - seqs[end]
            end += 1
        size = self._offset(end) - offsets[start]
        block = SpilledBlock(seqs[start], lines, os.pread(self._spill_out.fileno(), size, offsets[start]))
        return block if seqs[start] == first else block.rest(first)

    def _next_seq(self, chunk: int) -> int:
        """The first seq of chunk number `chunk`, or the one after the file's last line."""
        return self._chunk_seqs[chunk] if chunk < len(self._chunk_seqs) else self._written_seq + 1

    def _offset(self, chunk: int) -> int:
        return self._chunk_offsets[chunk] if chunk < len(self._chunk_offsets) else self._spill_end

    def ack(self, through_seq: int) -> None:
        """The conductor stored every line up to `through_seq`: forget them."""
        with self._cond:
            if self._memory and self._memory[0].seq <= through_seq:
                # Lines are consecutive: the acked ones are the first n.
                n = min(len(self._memory), through_seq + 1 - self._memory[0].seq)
                self.memory_bytes -= sum(map(_cost, islice(self._memory, n)))
                for _ in repeat(None, n):
                    self._memory.popleft()
            if self._spill_from and through_seq >= self._spill_from:
                self._spill_acked = max(self._spill_acked, min(through_seq, self.last_seq))
                self._forget_acked_chunks()
                if self._spill_acked == self.last_seq:
                    self._end_spill()  # every spilled line is stored: new lines go to memory again
            self._cond.notify_all()

    def save_unacked(self, path: Path) -> int:
        """Write the lines never acked to `path` (JSON lines), for a person to read; returns how many.

        The buffer's last use: it reads the spill file to its end.
        """
        with self._cond, path.open("w", encoding="utf-8") as out:
            for line in self._memory:
                out.write(_json_line(line))
            if self._spilled:
                for line in self._spilled_block_unbounded(self._spill_acked + 1):
                    out.write(_json_line(line))
            return len(self._memory) + self._spilled

    def _spilled_block_unbounded(self, first: int) -> Iterator[Line]:
        while first <= self.last_seq:
            block = self._spilled_block(first)
            yield from block
            first = block.first_seq + len(block)

    def _spill(self, step: str, stream: str, text: str, cost: int) -> None:
        chunk = self._chunk
        if not self._spill_from:
            self._spill_from = self.last_seq
            self._spill_acked = self.last_seq - 1
        if not chunk.texts:
            chunk = self._chunk = _Chunk(self.last_seq, [], [], [], 0)
        chunk.texts.append(text)
        chunk.ts.append(time.time())
        runs = chunk.runs
        if runs and runs[-1][0] == step and runs[-1][1] == stream:
            runs[-1][2] += 1
        else:
            runs.append([step, stream, 1])
        self._chunk = chunk._replace(cost=chunk.cost + cost)
        self.spilled_total += 1
        if len(chunk.texts) >= SPILL_CHUNK_LINES:
            self._write_chunk()

    def _write_chunk(self) -> None:
        chunk = self._chunk
        if not chunk.texts:
            return
        if self._spill_out is None:
            self._spill_out = self._spill_path.open("w+b")  # read back with pread
        fields = chunk.fields()
        self._spill_out.write(fields)
        self._chunk_seqs.append(chunk.first_seq)
        self._chunk_offsets.append(self._spill_end)
        self._spill_end += len(fields)
        self._written_seq = chunk.first_seq + len(chunk.texts) - 1
        self._chunk = _Chunk(0, [], [], [], 0)

    def _forget_acked_chunks(self) -> None:
        """Drop the index entries of chunks acked whole (the arrays shift once half of them are acked)."""
        count = len(self._chunk_seqs)
        while self._head < count and self._next_seq(self._head + 1) - 1 <= self._spill_acked:
            self._head += 1
        if self._head > 1024 and self._head * 2 > count:
            del self._chunk_seqs[: self._head]
            del self._chunk_offsets[: self._head]
            self._head = 0

    def _end_spill(self) -> None:
        """Start over with an empty file next time."""
        if self._spill_out is not None:
            self._spill_out.close()
        self._spill_out = None
        self._spill_path.unlink(missing_ok=True)
        self._spill_from = self._spill_acked = self._spill_end = self._written_seq = self._head = 0
        del self._chunk_seqs[:]
        del self._chunk_offsets[:]
        self._chunk = _Chunk(0, [], [], [], 0)


def _json_line(line: Line) -> str:
    """A line as JSON for a person (without its memory cost)."""
    fields = {"seq": line.seq, "step": line.step, "stream": line.stream, "text": line.text, "ts": line.ts}
    return json.dumps(fields) + "\n"
