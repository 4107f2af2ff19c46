"""The gateway's log writer: an attempt's log calls stored in arrival order, as groups with one fsync.

Nothing per line runs on the event loop: heartbeats (and the Temporal worker) share it, and an agent that
floods its log must never delay its own heartbeat past the conductor's silence limit.
"""

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from conductor_worker.gateway.log_blocks import LogBlock
from conductor_worker.gateway.log_store import LogStore
from contracts.logs import LogLine


@dataclass(frozen=True)
class _WaitingLogs:
    """A log call waiting for its turn: how to decode its lines, and its ack."""

    decode: Callable[[], Sequence[LogLine] | LogBlock]
    final: bool
    ack: asyncio.Future


class LogGroupWriter:
    def __init__(self, logs: LogStore) -> None:
        self._logs = logs
        # Per job attempt, the log calls waiting to be stored and the task storing them.
        self._queues: dict[tuple[str, int], list[_WaitingLogs]] = {}
        self._writers: dict[tuple[str, int], asyncio.Task] = {}

    async def store(
        self, key: tuple[str, int], decode: Callable[[], Sequence[LogLine] | LogBlock], final: bool
    ) -> int:
        """Queue a call's lines for the attempt's one storing task; the seq stored through, once stored.
        ValueError (or pydantic's ValidationError) when the lines do not decode.

        An agent keeps several blocks in flight: they are stored in the order they arrived (no block
        reaches the store before the one ahead of it and leaves a gap), all those waiting at once in one
        worker-thread call with one fsync, which also decodes them: a block's decoding is only its checks
        (about 0.1 ms for 2,000 lines; it is stored as the bytes it came in), less than a worker-thread
        hop of its own costs the event loop.
        """
        return await asyncio.shield(self.queue(key, decode, final))

    def queue(
        self, key: tuple[str, int], decode: Callable[[], Sequence[LogLine] | LogBlock], final: bool
    ) -> asyncio.Future:
        """`store`'s first half, done at once: the call's place in the queue; its ack comes in the future."""
        waiting = _WaitingLogs(decode, final, asyncio.get_running_loop().create_future())
        self._queues.setdefault(key, []).append(waiting)
        if key not in self._writers:
            self._writers[key] = asyncio.create_task(self._write_logs(key))
        return waiting.ack

    async def _write_logs(self, key: tuple[str, int]) -> None:
        try:
            # No await between the check and the task's end: a call queued after it finds no writer.
            while group := self._queues.pop(key, None):
                try:
                    outcomes = await asyncio.to_thread(self._store, key, group)
                except Exception as err:  # the store failed: every call of the group gets the error
                    outcomes = [err] * len(group)
                for waiting, outcome in zip(group, outcomes, strict=True):
                    if isinstance(outcome, BaseException):
                        waiting.ack.set_exception(outcome)
                    else:
                        waiting.ack.set_result(outcome)
        finally:
            del self._writers[key]

    def _store(self, key: tuple[str, int], group: list["_WaitingLogs"]) -> list[int | BaseException]:
        """Decode and store the group's calls, in order; a call whose lines do not decode gets its error
        instead of an ack."""
        refused: list[BaseException | None] = []
        decoded = []
        for waiting in group:
            try:
                decoded.append((waiting.decode(), waiting.final))
                refused.append(None)
            except Exception as err:  # ValueError, pydantic's ValidationError: LogCalls says which
                refused.append(err)
        # The local store fsyncs before it acks (once for the group); S3 is a blocking HTTP call.
        acks = iter(self._logs.append_group(*key, decoded) if decoded else [])
        return [next(acks) if err is None else err for err in refused]
