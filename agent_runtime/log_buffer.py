"""The agent's sequenced log: every line numbered, kept until the conductor acks it, sent in order.

`LogBuffer` keeps unacked lines in memory up to a bound and past it in a spill file on disk, so an agent
cut off from its conductor for a long time keeps every line without growing its memory. Spilled lines
are sent straight from the file as columns (`SpilledBlock`) and stay in the file until acked: a block in
flight holds no Python object per line, and one that must be sent again is read again. The spill file
is bounded too: past it, lines are counted, not kept (and take no seq, so the log has no gap), and
one line saying how many were dropped is logged as soon as there is room again, or at the end. The thread
that sends them is `agent_runtime.log_sender.LogSender`; a line leaves the buffer only once the conductor
acked it.
"""

import json
import pickle
import threading
import time
from bisect import bisect_right
from collections import deque
from collections.abc import Iterator, Sequence
from itertools import accumulate, islice, repeat
from operator import itemgetter
from pathlib import Path
from typing import IO, NamedTuple

AGENT_STREAM = "agent"
# 1 MiB: a flood spills to disk almost whole anyway (a step prints faster than the gateway stores), so
# more memory buys little; with the blocks in flight (at most the memory bound: a line stays in memory
# until acked) the agent stays under 60 MiB of RSS.
DEFAULT_MEMORY_BYTES = 1024 * 1024
DEFAULT_SPILL_BYTES = 512 * 1024 * 1024
# Per block: well under gRPC's 4 MiB message limit; four fit in the memory bound, to keep four in flight.
BATCH_LINES = 5000
BATCH_BYTES = 256 * 1024
# Per block read from the spill file: its lines stay on disk while it is in flight (only its encoded
# message is in memory, about half the lines' cost), so these blocks can be twice as big: four in flight
# make the gateway's groups (one fsync each) twice as big for the same memory.
SPILL_BATCH_BYTES = 512 * 1024
# Lines per pickled chunk of the spill file (about 30 KiB of 100-byte lines).
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


def _line(seq: int, step: str, stream: str, text: str) -> Line:
    return Line(seq, step, stream, text, time.time(), len(text) + len(step) + _LINE_OVERHEAD)


_cost = itemgetter(5)


def _cost_of(step: str, text: str) -> int:
    return len(text) + len(step) + _LINE_OVERHEAD


class SpilledBlock(Sequence[Line]):
    """Consecutive spilled lines as columns, as the spill file holds them: texts, times, and runs of
    lines from one step and stream. The sender encodes the columns as they are (no object per line);
    indexing or iterating makes `Line`s, for the rare reader that wants them."""

    __slots__ = ("first_seq", "texts", "ts", "runs")

    def __init__(self, first_seq: int, texts: list[str], ts: list[float], runs: list[list]) -> None:
        self.first_seq = first_seq
        self.texts = texts
        self.ts = ts
        self.runs = runs  # [step, stream, how many lines in a row]

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return list(self)[index]
        j = rest = range(len(self.texts))[index]  # IndexError, negative indexes
        for step, stream, n in self.runs:
            if rest < n:
                return Line(
                    self.first_seq + j, step, stream, self.texts[j], self.ts[j], _cost_of(step, self.texts[j])
                )
            rest -= n
        raise IndexError(index)  # the runs say fewer lines than the texts: never made so

    def __iter__(self) -> Iterator[Line]:
        seq, i = self.first_seq, 0
        for step, stream, n in self.runs:
            for text, ts in zip(self.texts[i : i + n], self.ts[i : i + n], strict=True):
                yield Line(seq, step, stream, text, ts, _cost_of(step, text))
                seq += 1
            i += n

    def _extend(self, chunk: "_Chunk", skip: int) -> None:
        """Add the chunk's lines from index `skip` on."""
        self.texts.extend(chunk.texts[skip:] if skip else chunk.texts)
        self.ts.extend(chunk.ts[skip:] if skip else chunk.ts)
        for step, stream, n in chunk.runs:
            take = n - min(skip, n)
            skip -= n - take
            if not take:
                continue
            if self.runs and self.runs[-1][0] == step and self.runs[-1][1] == stream:
                self.runs[-1][2] += take
            else:
                self.runs.append([step, stream, take])


class _Chunk(NamedTuple):
    """Consecutive spilled lines, pickled as one record of the spill file."""

    first_seq: int
    texts: list[str]
    ts: list[float]
    runs: list[list]  # [step, stream, n]
    cost: int

    @property
    def last_seq(self) -> int:
        return self.first_seq + len(self.texts) - 1


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
        # Pickled chunks of columns: ours alone, read back by this same process. A flood that spills
        # costs a pickle call per SPILL_CHUNK_LINES lines, not per line, and no object per line.
        self._spill_out: IO[bytes] | None = None
        self._spill_in: IO[bytes] | None = None
        self._spill_from = 0  # the first spilled line's seq while the file is in use (0: not spilling)
        self._spill_acked = 0  # spilled lines acked through this seq
        self._chunk = _Chunk(0, [], [], [], 0)  # the chunk being filled, not in the file yet
        # The file's chunks read (sent) and not wholly acked: (first seq, last seq, offset), to read
        # again from when a block must be sent again; then where the next unread chunk starts.
        self._read: deque[tuple[int, int, int]] = deque()
        self._read_pos = 0
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
        written = self._spill_out.tell() if self._spill_out is not None else 0
        return written + self._chunk.cost + size + _LINE_OVERHEAD > self._spill_bound

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
        """Spilled lines from seq `first` on, whole chunks read from the file (the one being filled is
        written first if the reader has caught up with it), up to SPILL_BATCH_BYTES and BATCH_LINES."""
        block = SpilledBlock(first, [], [], [])
        cost = 0
        # Where the chunk holding `first` starts: one read before (a block sent again), or the next.
        pos = next((offset for lo, hi, offset in self._read if lo <= first <= hi), self._read_pos)
        while cost < SPILL_BATCH_BYTES and len(block) < BATCH_LINES and first <= self.last_seq:
            if pos == self._read_pos and (self._spill_out is None or pos == self._spill_out.tell()):
                self._write_chunk()  # the reader caught up with the writer
            if self._spill_in is None:
                assert self._spill_out is not None
                self._spill_in = self._spill_path.open("rb")
            self._spill_out.flush()  # type: ignore[union-attr]  # the reader is another handle
            self._spill_in.seek(pos)
            chunk = _Chunk._make(pickle.load(self._spill_in))
            if pos == self._read_pos:
                self._read.append((chunk.first_seq, chunk.last_seq, pos))
                self._read_pos = self._spill_in.tell()
            pos = self._spill_in.tell()
            block._extend(chunk, first - chunk.first_seq)
            cost += chunk.cost
            first = chunk.last_seq + 1
        return block

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
                while self._read and self._read[0][1] <= self._spill_acked:
                    self._read.popleft()
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
        if not self._chunk.texts:
            return
        if self._spill_out is None:
            self._spill_out = self._spill_path.open("wb")
        pickle.dump(tuple(self._chunk), self._spill_out, protocol=pickle.HIGHEST_PROTOCOL)
        self._chunk = _Chunk(0, [], [], [], 0)

    def _end_spill(self) -> None:
        """Start over with an empty file next time."""
        for handle in (self._spill_in, self._spill_out):
            if handle is not None:
                handle.close()
        self._spill_in = self._spill_out = None
        self._spill_path.unlink(missing_ok=True)
        self._spill_from = self._spill_acked = self._read_pos = 0
        self._read.clear()
        self._chunk = _Chunk(0, [], [], [], 0)


def _json_line(line: Line) -> str:
    """A line as JSON for a person (without its memory cost)."""
    fields = {"seq": line.seq, "step": line.step, "stream": line.stream, "text": line.text, "ts": line.ts}
    return json.dumps(fields) + "\n"
