"""Operator instructions (`steer`) for a job's agent, and later alarms of its incident chain, put in the
job's mailboxes in the job store.

The gateway hands new entries to the running agent with its heartbeat answers, the model gateway adds
them to every model request of the agent's coding CLI (model_gateway/steering.py), and every later attempt
finds them all in its prompt, so an instruction outlives the agent it was sent to.
"""

import asyncio
import time
from pathlib import Path

from temporalio import activity

from contracts.activity_io import AwaitSteeringDeliveryInput, DeliverAlarmsInput, DeliverSteeringInput
from stores.job_store import JobAttemptDir, append_later_alarms, append_steering

POLL_SECONDS = 0.2


class SteeringMailbox:
    def __init__(self, jobs_dir: Path, delivery_wait_seconds: float = 0.0) -> None:
        self._jobs_dir = jobs_dir
        # 0: no coding CLI behind a model gateway (the demo agent), nothing will ever carry it.
        self._delivery_wait = delivery_wait_seconds

    @activity.defn(name="deliver_steering")
    async def deliver_steering(self, input: DeliverSteeringInput) -> None:
        append_steering(self._jobs_dir, input.job_id, input.seq, input.text, input.by)

    @activity.defn(name="deliver_later_alarms")
    async def deliver_later_alarms(self, input: DeliverAlarmsInput) -> None:
        """Alarms of the job's incident chain that came while its agent runs, for its next model request."""
        append_later_alarms(
            self._jobs_dir,
            input.job_id,
            [
                {
                    "event_id": alarm.event_id,
                    "text": f"{alarm.state} {alarm.alarm_name} ({alarm.account} {alarm.region}) at "
                    f"{alarm.event_time.isoformat()}: {alarm.reason or 'no reason given'}",
                }
                for alarm in input.alarms
            ],
        )

    @activity.defn(name="await_steering_delivery")
    async def await_steering_delivery(self, input: AwaitSteeringDeliveryInput) -> bool:
        """True once a model request of the attempt carried instruction `seq`; False after the wait."""
        job = JobAttemptDir(self._jobs_dir, input.job_id, input.attempt)
        deadline = time.monotonic() + self._delivery_wait
        while job.steering_delivered() < input.seq:
            if time.monotonic() >= deadline:
                return False
            activity.heartbeat()
            await asyncio.sleep(POLL_SECONDS)
        return True
