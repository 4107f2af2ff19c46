"""A block of consecutive log lines as `AppendLogBlock` carries them, checked and encoded for the store.

A block is columns (texts, times, runs of lines from one step and stream) under one first seq, so a
flood of lines costs the gateway a few checks per block and C-level loops per line: no message, no
model and no Python call per line. `encoded` writes the exact JSON lines `LogLine` reads back.
"""

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import chain, islice, repeat

from pydantic_core import to_json

from contracts.logs import LogLine

# A step or stream name; the runs of a block are few, so this check costs nothing.
MAX_SOURCE_CHARS = 255


class BadLogBlock(ValueError):
    """The block contradicts itself (column lengths, runs) or carries a value a log line cannot hold."""


@dataclass(frozen=True)
class LogBlock:
    first_seq: int
    texts: Sequence[str]
    ts: Sequence[float]
    runs: Sequence[tuple[str, str, int]]  # (step, stream, how many lines in a row)

    @classmethod
    def checked(
        cls, first_seq: int, texts: Sequence[str], ts: Sequence[float], runs: Sequence[tuple[str, str, int]]
    ) -> "LogBlock":
        if first_seq < 1:
            raise BadLogBlock(f"first_seq must be at least 1, got {first_seq}")
        if len(ts) != len(texts):
            raise BadLogBlock(f"{len(texts)} texts but {len(ts)} times")
        if any(n < 1 for *_, n in runs) or sum(n for *_, n in runs) != len(texts):
            raise BadLogBlock(f"the runs' counts must be positive and add up to the {len(texts)} lines")
        for step, stream, _ in runs:
            if len(step) > MAX_SOURCE_CHARS or len(stream) > MAX_SOURCE_CHARS:
                raise BadLogBlock(f"a step or stream name is longer than {MAX_SOURCE_CHARS} characters")
        if not all(map(math.isfinite, ts)):
            raise BadLogBlock("a line's time is not a finite number")
        return cls(first_seq, texts, ts, runs)

    @classmethod
    def from_lines(cls, lines: Sequence[LogLine]) -> "LogBlock":
        """Lines with consecutive seqs (as `lines_to_store` returns them) as one block."""
        runs: list[tuple[str, str, int]] = []
        for line in lines:
            if runs and runs[-1][:2] == (line.step, line.stream):
                runs[-1] = (line.step, line.stream, runs[-1][2] + 1)
            else:
                runs.append((line.step, line.stream, 1))
        first = lines[0].seq if lines else 1
        return cls.checked(first, [line.text for line in lines], [line.ts for line in lines], runs)

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def last_seq(self) -> int:
        return self.first_seq + len(self.texts) - 1

    def encoded(self, skip: int = 0) -> bytes:
        """The JSON lines (each newline-terminated) of the block's lines from index `skip` on.

        Encoded strings escape every newline and carriage return, so `splitlines` cuts them apart. The
        whole block's encoding is kept: the gateway encodes a block as it arrives, beside the store's
        fsync of the blocks ahead of it, and the store then finds it done.
        """
        if skip:
            return self._encode(skip)
        whole = self.__dict__.get("_whole")
        if whole is None:
            whole = self._encode(0)
            object.__setattr__(self, "_whole", whole)  # frozen: set once, from the block's own fields
        return whole

    def _encode(self, skip: int) -> bytes:
        n = len(self.texts) - skip
        if n <= 0:
            return b""
        # Each column is encoded by one call to pydantic-core's JSON encoder (a Rust loop, 2.5 times
        # faster than a C call per string), then cut apart: inside an encoded string every `"` is
        # escaped, so `","` only ever separates two strings (as `,` does two numbers). Then the
        # columns are interleaved and joined once. The seqs too are encoded by one call.
        texts = to_json(list(self.texts[skip:]))[2:-2].split(b'","')
        ts = to_json(list(self.ts[skip:]))[1:-1].split(b",")
        columns = zip(
            repeat(b'{"seq":', n),
            to_json(list(range(self.first_seq + skip, self.last_seq + 1)))[1:-1].split(b","),
            self._sources(skip),
            texts,
            repeat(b'","ts":', n),
            ts,
            repeat(b"}\n", n),
            strict=True,
        )
        return b"".join(chain.from_iterable(columns))

    def _sources(self, skip: int) -> Iterator[bytes]:
        """Per line, what comes between its seq and its text: its step and stream."""
        per_run = (
            (b',"step":' + to_json(step) + b',"stream":' + to_json(stream) + b',"text":"', n)
            for step, stream, n in self.runs
        )
        return islice(chain.from_iterable(repeat(*run) for run in per_run), skip, None)
