"""A block of consecutive log lines as `AppendLogBlock` carries them, checked and encoded for the store.

A block is columns (texts, times, runs of lines from one step and stream) under one first seq, so a
flood of lines costs the gateway a few checks per block and C-level loops per line: no message, no
model and no Python call per line. `encoded_lines` writes the exact JSON lines `LogLine` reads back.
"""

import json
import json.encoder
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import chain, islice, repeat

from contracts.logs import LogLine

# A step or stream name; the runs of a block are few, so this check costs nothing.
MAX_SOURCE_CHARS = 255
# The C string encoder behind json.dumps (non-ASCII kept as is, as pydantic writes it).
_encode_string = json.encoder.encode_basestring  # type: ignore[attr-defined]


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

        Encoded strings escape every newline and carriage return, so `splitlines` cuts them apart.
        """
        n = len(self.texts) - skip
        # Every column encoded by a C loop (json writes floats as repr does; they hold no ", "), then
        # interleaved and joined once.
        ts = json.dumps(list(self.ts[skip:]))[1:-1].split(", ") if n > 0 else []
        columns = zip(
            repeat('{"seq":', n),
            map(str, range(self.first_seq + skip, self.last_seq + 1)),
            repeat(',"step":', n),
            self._sources(0, skip),
            repeat(',"stream":', n),
            self._sources(1, skip),
            repeat(',"text":', n),
            map(_encode_string, self.texts[skip:]),
            repeat(',"ts":', n),
            ts,
            repeat("}\n", n),
            strict=True,
        )
        return "".join(chain.from_iterable(columns)).encode()

    def _sources(self, field: int, skip: int) -> Iterator[str]:
        per_line = chain.from_iterable(repeat(_encode_string(run[field]), run[2]) for run in self.runs)
        return islice(per_line, skip, None)
