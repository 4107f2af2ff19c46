"""SQS intake: long-poll batches; tickets start their workflow, alarms signal their account's workflow.

A message is deleted only once its workflow start was acknowledged (or found already done), so a crash
at any point means a redelivery, never a lost ticket; the workflow id makes the redelivery harmless.
A poison message (one that can never be acted on) goes to the dead-letter queue with its reason attribute
and one log line, and is deleted from the work queue. A start that fails because Temporal is unreachable
is not poison: the intake stops receiving and holds its messages until Temporal is back
(conductor_worker/intake/outage.py). An SQS outage is one log line and a backoff, not a traceback a poll.
"""

import asyncio
import logging
import time
from collections import OrderedDict
from enum import Enum
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from opentelemetry import trace
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy

from conductor_worker.config import Settings
from conductor_worker.intake.dlq import REASON_ATTRIBUTE, SOURCE_ID_ATTRIBUTE, find_dlq
from conductor_worker.intake.messages import parse_message
from conductor_worker.intake.outage import Availability, KeptInvisible, is_refusal
from conductor_worker.intake.poison import PoisonMessage
from conductor_worker.intake.ticket_start import START_RPC_TIMEOUT, TicketStart, start_ticket
from conductor_worker.metrics import IntakeMetrics, client_meter
from contracts.alarms import Alarm
from contracts.ids import account_workflow_id, ticket_workflow_id
from contracts.incidents import IncidentChainInput
from contracts.tickets import TicketMessage
from workflows.incident_chain import IncidentChainWorkflow

log = logging.getLogger(__name__)

DEAD_LETTERED_REMEMBERED = 10_000
SQS_BACKOFF_FIRST = 1.0
SQS_BACKOFF_MAX = 30.0


class Outcome(Enum):
    DONE = "done"  # started, a duplicate, or dead-lettered: delete it from the queue
    LEAVE = "leave"  # left to SQS: it comes back after its visibility timeout
    UNAVAILABLE = "unavailable"  # Temporal did not take the start: hold it until Temporal is back


class SqsIntake:
    def __init__(
        self, client: Client, settings: Settings, sqs: Any, tracer: trace.Tracer | None = None
    ) -> None:
        self._client = client
        self._settings = settings
        self._sqs = sqs
        self._queue_url = settings.sqs_queue_url
        self._dlq_url = settings.sqs_dlq_url or None
        # Message ids this process is dead-lettering (False) or has dead-lettered (True), oldest first, bounded.
        self._dead_lettered: OrderedDict[str, bool] = OrderedDict()
        self._availability = Availability(client)
        self._sqs_failures = 0
        self._sqs_failed_at = 0.0
        self._last_start_error: BaseException | None = None
        self._metrics = IntakeMetrics(client_meter(client))
        # Each message opens its trace; the workflow start inside carries it on (conductor_worker/process/tracing.py).
        self._tracer = tracer or trace.NoOpTracer()
        # Where a ticket's whole description goes when its payload carries a cut one.
        self._blobs = settings.open_blob_store()

    async def run(self, stop: asyncio.Event) -> None:
        log.info("SQS intake polling %s with %d pollers", self._queue_url, self._settings.sqs_pollers)
        await asyncio.gather(*(self._poll_until(stop) for _ in range(self._settings.sqs_pollers)))
        log.info("SQS intake stopped; unread messages wait in the queue")

    async def _poll_until(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            poll = asyncio.ensure_future(self._open_then_poll())
            stopped = asyncio.ensure_future(stop.wait())
            await asyncio.wait({poll, stopped}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            if not poll.done():
                # Messages received by an abandoned poll are not deleted: SQS redelivers them.
                poll.cancel()
                return
            try:
                poll.result()
            except (BotoCoreError, ClientError) as err:
                await asyncio.sleep(self._sqs_failed(err))
            except Exception:  # the intake must keep serving: log, back off, poll again
                log.exception("SQS intake poll failed; retrying in 5 s")
                await asyncio.sleep(5)

    async def _open_then_poll(self) -> int:
        await self._availability.wait_open()  # no receive while Temporal is out: a receive counts
        return await self.poll_once()

    def _sqs_failed(self, err: Exception) -> float:
        """One warning per SQS outage (not one traceback per receive); the backoff doubles up to 30 s."""
        self._sqs_failures += 1
        self._sqs_failed_at = time.monotonic()
        backoff = min(SQS_BACKOFF_FIRST * 2 ** (self._sqs_failures - 1), SQS_BACKOFF_MAX)
        if self._sqs_failures == 1:
            text = str(err).splitlines()[0] if str(err) else ""
            log.warning(
                "SQS receive failed (%s: %s); retrying with backoff up to %.0f s",
                type(err).__name__,
                text,
                SQS_BACKOFF_MAX,
            )
        else:
            log.debug("SQS receive failed again (%d): %s", self._sqs_failures, err)
        return backoff

    async def poll_once(self) -> int:
        """One long poll: handle up to 10 messages concurrently, delete the acted-on ones at once, and
        hold the ones Temporal did not take until it is back."""
        started = time.monotonic()
        response = await asyncio.to_thread(
            self._sqs.receive_message,
            QueueUrl=self._queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=self._settings.sqs_wait_seconds,
            VisibilityTimeout=self._settings.sqs_visibility_timeout_seconds,
        )
        received_at = time.monotonic()
        # Only a receive begun after the last failure says SQS is back: a long poll begun before the
        # outage may still return from the connection it had.
        if self._sqs_failures and started > self._sqs_failed_at:
            log.info("SQS receive works again after %d failed receives", self._sqs_failures)
            self._sqs_failures = 0
        messages = response.get("Messages", [])
        if not messages:
            return 0
        kept = KeptInvisible(
            self._sqs,
            self._queue_url,
            self._settings.sqs_visibility_timeout_seconds,
            self._settings.sqs_max_hold_seconds,
        )
        kept.pending = messages
        keeper = asyncio.create_task(kept.keep(received_at))
        try:
            rounds = 0
            while kept.pending:
                outcomes = await asyncio.gather(*(self.handle(message) for message in kept.pending))
                done = [m for m, o in zip(kept.pending, outcomes, strict=True) if o is Outcome.DONE]
                undecided = [
                    m for m, o in zip(kept.pending, outcomes, strict=True) if o is Outcome.UNAVAILABLE
                ]
                await self._delete(done)
                kept.pending = undecided
                if undecided:
                    self._availability.close(self._last_start_error, held=len(undecided))
                    kept.pending = await kept.hold(self._availability, rounds)
                    rounds += 1
        finally:
            keeper.cancel()
        return len(messages)

    async def handle(self, message: dict) -> Outcome:
        """Act on one message and say what becomes of it."""
        attributes = {"messaging.system": "aws_sqs", "messaging.message.id": message["MessageId"]}
        with self._tracer.start_as_current_span(
            "sqs.receive", kind=trace.SpanKind.CONSUMER, attributes=attributes
        ):
            return await self._handle(message)

    async def _handle(self, message: dict) -> Outcome:
        message_id = message["MessageId"]
        try:
            work = parse_message(message["Body"])
        except PoisonMessage as err:
            self._metrics.message("poison", "dead_lettered")
            return await self._dead_letter(message, err.reason)
        except Exception as err:  # a parser bug: the message still cannot be acted on, and says why
            self._metrics.message("poison", "dead_lettered")
            return await self._dead_letter(message, f"the parser failed: {type(err).__name__}: {err}"[:500])
        kind = "alarm" if isinstance(work, Alarm) else "ticket"
        try:
            if isinstance(work, Alarm):
                await self.deliver_alarm(work)
                started = True
            else:
                started = await self.start_ticket(work) is TicketStart.STARTED
        except Exception as err:
            if is_refusal(err):
                self._metrics.message(kind, "dead_lettered")
                return await self._dead_letter(message, f"Temporal refused the start: {err}")
            log.debug("message %s: workflow start failed: %s", message_id, err)
            self._metrics.message(kind, "unavailable")
            self._last_start_error = err
            return Outcome.UNAVAILABLE
        self._metrics.message(kind, "started" if started else "duplicate")
        return Outcome.DONE

    async def deliver_alarm(self, alarm: Alarm) -> None:
        """Signal-with-start the account's workflow; it decides (durably) what the alarm means."""
        await self._client.start_workflow(
            IncidentChainWorkflow.run,
            IncidentChainInput(
                account=alarm.account,
                policy=self._settings.chain_policy(),
                task_queue=self._settings.task_queue,
                incident_reports=self._settings.incident_reports_enabled,
            ),
            id=account_workflow_id(alarm.account),
            task_queue=self._settings.task_queue,
            start_signal="alarm",
            start_signal_args=[alarm],
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            rpc_timeout=START_RPC_TIMEOUT,
        )

    async def start_ticket(self, ticket: TicketMessage) -> TicketStart:
        """Start the ticket's workflow; a copy of a message already taken is dropped with a log line."""
        outcome = await start_ticket(self._client, self._settings.task_queue, ticket, self._blobs)
        if outcome is not TicketStart.STARTED:
            log.info(
                "ticket %s %s by %s; duplicate message dropped",
                ticket.key,
                outcome,
                ticket_workflow_id(ticket.source, ticket.key),
            )
        return outcome

    async def _delete(self, messages: list[dict]) -> None:
        if not messages:
            return
        response = await asyncio.to_thread(
            self._sqs.delete_message_batch,
            QueueUrl=self._queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
        )
        for failed in response.get("Failed", []):
            # Harmless: the message comes back and its workflow id makes the redelivery a no-op.
            log.warning(
                "could not delete message %s: %s",
                messages[int(failed["Id"])]["MessageId"],
                failed.get("Message", failed.get("Code")),
            )

    async def _dead_letter(self, message: dict, reason: str) -> Outcome:
        message_id = message["MessageId"]
        if message_id in self._dead_lettered:
            # SQS delivers at least once. A copy of a message already in the DLQ is only deleted; a copy that
            # arrives while the first is still being sent is left alone (it returns, and is decided then).
            log.debug("poison message %s delivered again", message_id)
            return Outcome.DONE if self._dead_lettered[message_id] else Outcome.LEAVE
        self._dead_lettered[message_id] = False  # before any await: concurrent pollers may hold copies
        sent = False
        try:
            sent = self._dead_lettered[message_id] = await self._send_to_dlq(message, reason)
            return Outcome.DONE if sent else Outcome.LEAVE
        finally:
            if not sent:  # not in the DLQ (none configured, or the send failed): a redelivery must try again
                del self._dead_lettered[message_id]
            while len(self._dead_lettered) > DEAD_LETTERED_REMEMBERED:
                self._dead_lettered.popitem(last=False)

    async def _send_to_dlq(self, message: dict, reason: str) -> bool:
        message_id = message["MessageId"]
        dlq_url = await self._find_dlq()
        if dlq_url is None:
            log.error(
                "poison message %s: %s; no DLQ configured, leaving it to the queue's redrive",
                message_id,
                reason,
            )
            return False
        try:
            await asyncio.to_thread(
                self._sqs.send_message,
                QueueUrl=dlq_url,
                MessageBody=message["Body"],
                MessageAttributes={
                    REASON_ATTRIBUTE: {"DataType": "String", "StringValue": reason[:1024]},
                    SOURCE_ID_ATTRIBUTE: {"DataType": "String", "StringValue": message_id},
                },
            )
        except (BotoCoreError, ClientError) as err:
            log.error(
                "poison message %s (%s) could not be moved to the DLQ: %s; left to the queue's redrive",
                message_id,
                reason,
                str(err).splitlines()[0] if str(err) else type(err).__name__,
            )
            return False
        log.error("poison message %s moved to the DLQ: %s", message_id, reason)
        return True

    async def _find_dlq(self) -> str | None:
        """The configured DLQ, else the one named by the queue's RedrivePolicy."""
        if self._dlq_url is None:
            self._dlq_url = await asyncio.to_thread(find_dlq, self._sqs, self._queue_url)
        return self._dlq_url
