"""Operator instructions (`steer`) for a job's agent, and later alarms of its incident chain, put in the
job's mailbox in the blob store every replica shares (stores/mailbox.py).

The gateway hands new entries to the running agent with its heartbeat answers, the model gateway adds
them to every model request of the agent's coding CLI (model_gateway/steering.py) and signals the job
`steering_delivered`, and every later attempt finds them all in its prompt, so an instruction outlives the
agent it was sent to.
"""

import asyncio
import time

from temporalio import activity

from contracts.activity_io import (
    AwaitSteeringDeliveryInput,
    DeliverAlarmsInput,
    DeliverSteeringInput,
    DeliverSteeringResult,
)
from stores.mailbox import JobMailbox

POLL_SECONDS = 0.5


class SteeringMailbox:
    def __init__(self, mailbox: JobMailbox, delivery_wait_seconds: float = 0.0) -> None:
        self._mailbox = mailbox
        # 0: no coding CLI behind a model gateway (the demo agent), nothing will ever carry it.
        self._delivery_wait = delivery_wait_seconds

    @activity.defn(name="deliver_steering")
    async def deliver_steering(self, input: DeliverSteeringInput) -> DeliverSteeringResult:
        """Put the entry in the mailbox; say how long the `steer` update may wait for the model gateway's
        `steering_delivered` signal (runs recorded before that signal ignore the answer)."""
        await asyncio.to_thread(self._mailbox.add_steering, input.job_id, input.seq, input.text, input.by)
        return DeliverSteeringResult(delivery_wait_seconds=self._delivery_wait)

    @activity.defn(name="deliver_later_alarms")
    async def deliver_later_alarms(self, input: DeliverAlarmsInput) -> None:
        """Alarms of the job's incident chain that came while its agent runs, for its next model request."""
        await asyncio.to_thread(
            self._mailbox.add_later_alarms,
            input.job_id,
            [
                {
                    "event_id": alarm.event_id,
                    "at": alarm.event_time.isoformat(),
                    "text": f"{alarm.state} {alarm.alarm_name} ({alarm.account} {alarm.region}) at "
                    f"{alarm.event_time.isoformat()}: {alarm.reason or 'no reason given'}",
                }
                for alarm in input.alarms
            ],
        )

    @activity.defn(name="await_steering_delivery")
    async def await_steering_delivery(self, input: AwaitSteeringDeliveryInput) -> bool:
        """True once a model request of the attempt carried instruction `seq`; False after the wait.
        Only for `steer` updates of runs from before the `steering-delivered-signal` patch, which poll the
        mailbox's record (every POLL_SECONDS); newer runs hear the model gateway's signal instead."""
        deadline = time.monotonic() + self._delivery_wait
        while await asyncio.to_thread(self._mailbox.delivered, input.job_id, input.attempt) < input.seq:
            if time.monotonic() >= deadline:
                return False
            activity.heartbeat()
            await asyncio.sleep(POLL_SECONDS)
        return True
