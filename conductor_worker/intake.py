"""SQS intake: long-poll batches; tickets start their workflow, alarms signal their account's workflow.

A message is deleted only once its workflow start was acknowledged (or found already done), so a crash
at any point means a redelivery, never a lost ticket; the workflow id makes the redelivery harmless.
A poison message goes to the dead-letter queue with one log line and is deleted from the work queue.
"""

import asyncio
import json
import logging
from collections import OrderedDict
from typing import Any

from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from conductor_worker.config import Settings
from conductor_worker.messages import PoisonMessage, parse_message
from contracts.alarms import Alarm
from contracts.ids import account_workflow_id, ticket_workflow_id
from contracts.incidents import IncidentChainInput
from contracts.tickets import TicketMessage
from workflows.incident_chain import IncidentChainWorkflow
from workflows.ticket import TicketWorkflow

log = logging.getLogger(__name__)

DEAD_LETTERED_REMEMBERED = 10_000


class SqsIntake:
    def __init__(self, client: Client, settings: Settings, sqs: Any) -> None:
        self._client = client
        self._settings = settings
        self._sqs = sqs
        self._queue_url = settings.sqs_queue_url
        self._dlq_url = settings.sqs_dlq_url or None
        # Message ids this process is dead-lettering (False) or has dead-lettered (True), oldest first, bounded.
        self._dead_lettered: OrderedDict[str, bool] = OrderedDict()

    async def run(self, stop: asyncio.Event) -> None:
        log.info("SQS intake polling %s with %d pollers", self._queue_url, self._settings.sqs_pollers)
        await asyncio.gather(*(self._poll_until(stop) for _ in range(self._settings.sqs_pollers)))
        log.info("SQS intake stopped; unread messages wait in the queue")

    async def _poll_until(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            poll = asyncio.ensure_future(self.poll_once())
            stopped = asyncio.ensure_future(stop.wait())
            await asyncio.wait({poll, stopped}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            if not poll.done():
                # Messages received by an abandoned poll are not deleted: SQS redelivers them.
                poll.cancel()
                return
            try:
                poll.result()
            except Exception:  # the intake must keep serving: log, back off, poll again
                log.exception("SQS intake poll failed; retrying in 5 s")
                await asyncio.sleep(5)

    async def poll_once(self) -> int:
        """One long poll: handle up to 10 messages concurrently, then delete the acted-on ones at once."""
        response = await asyncio.to_thread(
            self._sqs.receive_message,
            QueueUrl=self._queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=self._settings.sqs_wait_seconds,
            VisibilityTimeout=self._settings.sqs_visibility_timeout_seconds,
        )
        messages = response.get("Messages", [])
        acted = await asyncio.gather(*(self.handle(message) for message in messages))
        await self._delete([m for m, done in zip(messages, acted, strict=True) if done])
        return len(messages)

    async def handle(self, message: dict) -> bool:
        """Act on one message; True when it may be deleted (started, duplicate, or dead-lettered)."""
        message_id = message["MessageId"]
        try:
            work = parse_message(message["Body"])
        except PoisonMessage as err:
            return await self._dead_letter(message, err.reason)
        try:
            if isinstance(work, Alarm):
                await self.deliver_alarm(work)
            else:
                await self.start_ticket(work)
        except Exception as err:
            # Not deleted: the message becomes visible again and is retried after the timeout.
            log.warning("message %s: workflow start failed, will retry: %s", message_id, err)
            return False
        return True

    async def deliver_alarm(self, alarm: Alarm) -> None:
        """Signal-with-start the account's workflow; it decides (durably) what the alarm means."""
        await self._client.start_workflow(
            IncidentChainWorkflow.run,
            IncidentChainInput(
                account=alarm.account,
                policy=self._settings.chain_policy(),
                task_queue=self._settings.task_queue,
            ),
            id=account_workflow_id(alarm.account),
            task_queue=self._settings.task_queue,
            start_signal="alarm",
            start_signal_args=[alarm],
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )

    async def start_ticket(self, ticket: TicketMessage) -> None:
        workflow_id = ticket_workflow_id(ticket.source, ticket.key)
        try:
            await self._client.start_workflow(
                TicketWorkflow.run,
                ticket,
                id=workflow_id,
                task_queue=self._settings.task_queue,
                # A duplicate of a running ticket joins it; a finished ticket is not redone.
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            )
        except WorkflowAlreadyStartedError:
            log.info(
                "ticket %s already handled by %s; duplicate message dropped",
                ticket.key,
                workflow_id,
            )

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

    async def _dead_letter(self, message: dict, reason: str) -> bool:
        message_id = message["MessageId"]
        if message_id in self._dead_lettered:
            # SQS delivers at least once. A copy of a message already in the DLQ is only deleted; a copy that
            # arrives while the first is still being sent is left alone (it returns, and is decided then).
            log.debug("poison message %s delivered again", message_id)
            return self._dead_lettered[message_id]
        self._dead_lettered[message_id] = False  # before any await: concurrent pollers may hold copies
        sent = False
        try:
            sent = self._dead_lettered[message_id] = await self._send_to_dlq(message, reason)
            return sent
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
        await asyncio.to_thread(
            self._sqs.send_message,
            QueueUrl=dlq_url,
            MessageBody=message["Body"],
            MessageAttributes={
                "ConductorRejectReason": {"DataType": "String", "StringValue": reason[:1024]},
                "SourceMessageId": {"DataType": "String", "StringValue": message_id},
            },
        )
        log.error("poison message %s moved to the DLQ: %s", message_id, reason)
        return True

    async def _find_dlq(self) -> str | None:
        """The configured DLQ, else the one named by the queue's RedrivePolicy."""
        if self._dlq_url is None:
            attrs = await asyncio.to_thread(
                self._sqs.get_queue_attributes,
                QueueUrl=self._queue_url,
                AttributeNames=["RedrivePolicy"],
            )
            policy = attrs.get("Attributes", {}).get("RedrivePolicy")
            if policy:
                dlq_name = json.loads(policy)["deadLetterTargetArn"].rsplit(":", 1)[-1]
                found = await asyncio.to_thread(self._sqs.get_queue_url, QueueName=dlq_name)
                self._dlq_url = found["QueueUrl"]
        return self._dlq_url
