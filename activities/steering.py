"""Operator instructions (`steer`) for a job's agent, put in the job's mailbox in the job store.

The gateway hands new entries to the running agent with its heartbeat answers, and every later
attempt finds them all in its prompt, so an instruction outlives the agent it was sent to.
"""

from pathlib import Path

from temporalio import activity

from conductor_worker.job_store import append_steering
from contracts.activity_io import DeliverSteeringInput


class SteeringMailbox:
    def __init__(self, jobs_dir: Path) -> None:
        self._jobs_dir = jobs_dir

    @activity.defn(name="deliver_steering")
    async def deliver_steering(self, input: DeliverSteeringInput) -> None:
        append_steering(self._jobs_dir, input.job_id, input.seq, input.text, input.by)
