"""Transient is not poison: while Temporal cannot take a start, the intake holds what it has and waits.

SQS counts every receive of a message; its redrive policy moves a message received `maxReceiveCount` times
to the DLQ. An intake that kept receiving during an outage would dead-letter valid tickets, so instead:
- the pollers stop receiving (`Availability.wait_open`);
- each poller keeps the messages it already holds invisible (ChangeMessageVisibility, every half
  visibility timeout, for at most `max_hold` seconds: SQS allows 12 hours from the receive);
- it probes Temporal with backoff until it answers, then starts the held messages and receives again.
A held message is never received again while it is held, so its receive count does not grow.
"""

import asyncio
import logging
import time
from datetime import timedelta
from typing import Any

from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

log = logging.getLogger(__name__)

PROBE_TIMEOUT = timedelta(seconds=2)
PROBE_BACKOFF_FIRST = 0.5
PROBE_BACKOFF_MAX = 5.0
# A pause this soon after the last resume is logged at DEBUG: a start that keeps failing while Temporal
# answers its probe (a rate limit, say) pauses and resumes every few seconds, and must not flood the log.
QUIET_AFTER_RESUME_SECONDS = 60.0
# Temporal answered but refused this one start: retrying cannot help, the message is dead-lettered.
REFUSED_STATUSES = frozenset({RPCStatusCode.INVALID_ARGUMENT})


def is_refusal(err: BaseException) -> bool:
    """A start Temporal answered with a definite no (e.g. a payload over its size limit)."""
    return isinstance(err, RPCError) and err.status in REFUSED_STATUSES


class Availability:
    """Shared by the intake's pollers: open while Temporal takes starts, closed during an outage."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._open = asyncio.Event()
        self._open.set()
        self._closed_at = 0.0
        self._resumed_at = -QUIET_AFTER_RESUME_SECONDS

    @property
    def is_open(self) -> bool:
        return self._open.is_set()

    async def wait_open(self) -> None:
        await self._open.wait()

    def close(self, cause: BaseException | None, held: int) -> None:
        if self._open.is_set():  # one line per outage, whichever poller sees it first
            self._open.clear()
            self._closed_at = time.monotonic()
            recent = self._closed_at - self._resumed_at < QUIET_AFTER_RESUME_SECONDS
            log.log(
                logging.DEBUG if recent else logging.WARNING,
                "Temporal unreachable (%s): intake stops receiving and holds %d messages until it is back",
                _one_line(cause),
                held,
            )

    async def probe(self) -> bool:
        """True (and open again) when Temporal answers."""
        try:
            await self._client.workflow_service.get_system_info(GetSystemInfoRequest(), timeout=PROBE_TIMEOUT)
        except RPCError as err:
            log.debug("Temporal probe failed: %s", _one_line(err))
            return False
        if not self._open.is_set():
            now = time.monotonic()
            quiet = self._closed_at - self._resumed_at < QUIET_AFTER_RESUME_SECONDS
            log.log(
                logging.DEBUG if quiet else logging.INFO,
                "Temporal reachable again after %.1f s: intake resumes",
                now - self._closed_at,
            )
            self._resumed_at = now
            self._open.set()
        return True


class KeptInvisible:
    """A poller's batch while it is in hand: the undecided messages stay invisible until decided.

    A start can take longer than the visibility timeout when Temporal does not answer (the SDK retries
    for up to START_RPC_TIMEOUT), so the extension runs from the receive on, not only during a hold.
    """

    def __init__(self, sqs: Any, queue_url: str, visibility_seconds: int, max_hold_seconds: float) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._visibility = visibility_seconds
        self._max_hold = max_hold_seconds
        self.pending: list[dict] = []
        self.expired = False

    async def keep(self, received_at: float) -> None:
        """Run until cancelled: extend `pending` every half timeout; release it when the hold runs out."""
        next_extension = received_at + self._visibility / 2
        deadline = received_at + self._max_hold
        while True:
            await asyncio.sleep(max(0.0, min(next_extension, deadline) - time.monotonic()))
            if not self.pending:
                next_extension += self._visibility / 2
                continue
            if time.monotonic() >= deadline:
                log.error(
                    "held %d messages for %.0f s (the limit) without Temporal: released to the queue",
                    len(self.pending),
                    self._max_hold,
                )
                self.expired = True
                await self._set_visibility(list(self.pending), 0)
                return
            await self._set_visibility(list(self.pending), self._visibility)
            next_extension = time.monotonic() + self._visibility / 2

    async def hold(self, availability: Availability, rounds: int = 0) -> list[dict]:
        """Wait until Temporal answers; returns the messages to try again (none if the hold ran out).

        `rounds`: holds of these messages before this one. The first probe waits longer each round, so
        a start that fails while Temporal answers its probe is retried with backoff, not in a tight loop.
        """
        backoff = min(PROBE_BACKOFF_FIRST * 2**rounds, PROBE_BACKOFF_MAX)
        while not self.expired:
            await asyncio.sleep(backoff)
            if await availability.probe():
                return [] if self.expired else self.pending
            backoff = min(backoff * 2, PROBE_BACKOFF_MAX)
        return []

    async def _set_visibility(self, messages: list[dict], seconds: int) -> None:
        try:
            response = await asyncio.to_thread(
                self._sqs.change_message_visibility_batch,
                QueueUrl=self._queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": seconds}
                    for i, m in enumerate(messages)
                ],
            )
        except Exception as err:  # SQS down as well: the message may come back; its workflow id dedupes it
            log.warning(
                "could not extend the visibility of %d held messages: %s", len(messages), _one_line(err)
            )
            return
        for failed in response.get("Failed", []):
            log.warning(
                "could not extend the visibility of message %s: %s",
                messages[int(failed["Id"])]["MessageId"],
                failed.get("Message", failed.get("Code")),
            )


def _one_line(err: BaseException) -> str:
    text = str(err).splitlines()[0] if str(err) else ""
    return f"{type(err).__name__}: {text}"[:300]
