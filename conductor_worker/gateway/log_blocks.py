"""A block of consecutive log lines as `AppendLogBlock` carries them, checked and encoded for the store.

A block is columns (texts, times, runs of lines from one step and stream) under one first seq, so a
flood of lines costs the gateway a few checks per block and C-level loops per line: no message, no
model and no Python call per line. The store keeps the block as its message
(conductor_worker/gateway/log_records.py).
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from contracts.logs import LogLine
from proto.conductor.v1 import agent_pb2

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
    # The serialized message the block came in, when it is exactly this block (not cut): stored as it is.
    received: bytes | None = field(default=None, compare=False, repr=False)

    @classmethod
    def checked(
        cls,
        first_seq: int,
        texts: Sequence[str],
        ts: Sequence[float],
        runs: Sequence[tuple[str, str, int]],
        received: bytes | None = None,
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
        return cls(first_seq, texts, ts, runs, received)

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

    def serialized(self) -> bytes:
        """The block as an `agent_pb2.LogBlock` message, the store's record payload.

        A block decoded from an `AppendLogBlock` call is the call's own bytes, with no work at all;
        another (from `AppendLogs`' lines, or cut at the store's limit) is built from its columns, once.
        """
        data = self.received or self.__dict__.get("_serialized")
        if data is None:
            message = agent_pb2.LogBlock(
                first_seq=self.first_seq,
                text=self.texts,
                ts=self.ts,
                runs=[agent_pb2.LogRun(step=s, stream=t, count=n) for s, t, n in self.runs],
            )
            data = message.SerializeToString()
            object.__setattr__(self, "_serialized", data)  # frozen: set once, from the block's own fields
        return data
