"""A block of consecutive log lines as `AppendLogBlock` carries them, checked and encoded for the store.

A block is columns (texts, times, runs of lines from one step and stream) under one first seq, so a
flood of lines costs the gateway a few checks per block and C-level loops per line: no message, no
model and no Python call per line. The store keeps the block as its message
(conductor_worker/gateway/log_records.py).
"""

from collections.abc import Sequence
from dataclasses import dataclass, field

from contracts.logs import LogLine
from proto.conductor.v1 import agent_pb2

# A step or stream name; the runs of a block are few, so this check costs nothing.
MAX_SOURCE_CHARS = 255


class BadLogBlock(ValueError):
    """The block contradicts itself (column lengths, runs) or carries a value a log line cannot hold."""


# Per byte value: is it all ones where a little-endian double's exponent bits are, in its last byte (the
# 7 bits below the sign) and in the byte before it (the high 4 bits).
_EXPONENT_IN_LAST_BYTE = bytes(int(b & 0x7F == 0x7F) for b in range(256))
_EXPONENT_IN_NEXT_TO_LAST = bytes(int(b & 0xF0 == 0xF0) for b in range(256))


def all_finite(ts: Sequence[float]) -> bool:
    """No time is infinite or NaN: the block's times checked with no Python object per time (iterating a
    block's times was most of the gateway's CPU per block, about 0.25 ms per 5,000 lines).

    A double is not finite exactly when its 11 exponent bits are all ones. protobuf packs the times as
    little-endian doubles, so the check is two strided byte slices, two table lookups and an AND.
    """
    packed = agent_pb2.LogBlock(ts=ts).SerializeToString()  # a C-level copy: tag, length, the doubles
    doubles = packed[len(packed) - 8 * len(ts) :]
    last = doubles[7::8].translate(_EXPONENT_IN_LAST_BYTE)
    next_to_last = doubles[6::8].translate(_EXPONENT_IN_NEXT_TO_LAST)
    return not int.from_bytes(last, "little") & int.from_bytes(next_to_last, "little")


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
        if not all_finite(ts):
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
