"""The thread that sends the agent's log: batches in flight, re-sent from the ack, retried with backoff.

It takes the oldest lines from a `LogBuffer` (agent_runtime/log_buffer.py) and drops them from it only once
the conductor acked them.
"""

import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol

from agent_runtime.connection import GatewayError, GatewayRefused
from agent_runtime.log_buffer import Line, LogBuffer, seq_span

log = logging.getLogger(__name__)


class LogSender:
    """A daemon thread that sends the buffer's lines until the final line is acked.

    `send(lines, final)` returns the conductor's ack (highest seq stored without gaps), or an object whose
    `result()` waits for it (`GatewayConnection.start_append_logs`): then up to `in_flight` batches are
    in flight at once, so the agent encodes the next batch while the conductor stores the last one. A
    call that reaches the store before the one ahead of it stores nothing (a gap) and the sender
    re-sends from the ack, so every line is stored once and in order. Unreachable gateway: retry with
    exponential backoff. A refused token (a superseded attempt): stop; nobody will take our lines.
    """

    def __init__(
        self,
        buffer: LogBuffer,
        send: Callable[[Sequence[Line], bool], "int | _Pending"],
        *,
        initial_backoff: float = 0.2,
        max_backoff: float = 5.0,
        in_flight: int = 4,
    ) -> None:
        if in_flight < 1:
            raise ValueError("in_flight must be at least 1")
        self._buffer = buffer
        self._send = send
        self._initial_backoff = initial_backoff
        self._max_backoff = max_backoff
        self._in_flight = in_flight
        self._stopped = threading.Event()
        self.complete = False
        self.refused: GatewayRefused | None = None
        self._thread = threading.Thread(target=self._run, name="log-sender", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def finish(self, timeout: float) -> bool:
        """Wait up to `timeout` for the final line to be acked; then stop. True if the log is complete."""
        self._thread.join(timeout)
        self._stopped.set()
        return self.complete

    def _start(self, batch: Sequence[Line], final: bool) -> "_Pending":
        try:
            sent = self._send(batch, final)
        except GatewayError as err:
            return _Done(err)
        return _Done(sent) if isinstance(sent, int) else sent

    def _run(self) -> None:
        backoff, failing = self._initial_backoff, False
        acked = sent = 0  # the conductor stored every line through `acked`; calls carry lines through `sent`
        resent_from = -1  # the ack we last re-sent from: no progress past it twice means the store is behind
        in_flight: deque[tuple[int, int, _Pending]] = deque()  # each call's first and last seq
        while not self._stopped.is_set():
            while len(in_flight) < self._in_flight:
                batch = self._buffer.next_batch(timeout=0 if in_flight else 0.5, after=sent)
                if not batch:
                    break
                first_seq, sent = seq_span(batch)
                in_flight.append((first_seq, sent, self._start(batch, sent == self._buffer.final_seq)))
            if not in_flight:
                continue
            first, last, call = in_flight.popleft()
            try:
                acked = max(acked, call.result())
                if acked < last:
                    # Not all of this batch stored: a call behind it reached the store first, or the
                    # store is behind lines it acked before. Let the others land, then resume from the ack.
                    acked = max(acked, _settle(in_flight))
                    self._buffer.ack(acked)
                    sent = acked
                    if acked < first and acked <= resent_from:
                        raise GatewayError(f"the conductor acked {acked}, below the batch's first seq")
                    resent_from = acked
            except GatewayRefused as err:
                self.refused = err
                _settle(in_flight)
                log.error("log upload refused, %d lines will not be delivered: %s", self._buffer.pending, err)
                return
            except GatewayError as err:
                acked = max(acked, _settle(in_flight))
                self._buffer.ack(acked)
                sent = acked
                if self._buffer.final_seq and acked >= self._buffer.final_seq:
                    # A call behind the failed one stored through the final line: nothing is left to send.
                    self.complete = True
                    return
                if not failing:
                    log.warning("log upload failed, retrying with backoff: %s", err)
                failing = True
                self._stopped.wait(backoff)
                backoff = min(backoff * 2, self._max_backoff)
                continue
            if failing:
                log.info("log upload: gateway reachable again")
            backoff, failing = self._initial_backoff, False
            self._buffer.ack(acked)
            if self._buffer.final_seq and acked >= self._buffer.final_seq:
                self.complete = True
                _settle(in_flight)
                return


class _Pending(Protocol):
    def result(self) -> int: ...


class _Done:
    """A call that already answered (a plain `send`), or failed before leaving."""

    def __init__(self, outcome: int | GatewayError) -> None:
        self._outcome = outcome

    def result(self) -> int:
        if isinstance(self._outcome, GatewayError):
            raise self._outcome
        return self._outcome


def _settle(in_flight: deque[tuple[int, int, _Pending]]) -> int:
    """Wait for every call still in flight; the highest ack among those that answered (0 if none)."""
    best = 0
    while in_flight:
        *_, call = in_flight.popleft()
        try:
            best = max(best, call.result())
        except GatewayError:
            pass
    return best
