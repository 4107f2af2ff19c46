"""The `conductor_jobs{state}` gauge: open agent jobs of the conductor's task queue by their JobState, as
Temporal's visibility counts them.

Every replica that exports metrics reports the same numbers (they come from Temporal, not from the replica):
aggregate with max(), not sum(). One count request per state every POLL_SECONDS.
"""

import asyncio
import logging

from temporalio.client import Client
from temporalio.common import MetricMeter
from temporalio.service import RPCError

from contracts.jobs import JobState

log = logging.getLogger(__name__)

POLL_SECONDS = 30.0


async def report_job_states(
    client: Client, meter: MetricMeter, task_queue: str, stop: asyncio.Event, every: float = POLL_SECONDS
) -> None:
    open_jobs = (
        f"WorkflowType = 'AgentJobWorkflow' AND ExecutionStatus = 'Running' AND TaskQueue = '{task_queue}'"
    )
    gauge = meter.create_gauge("conductor_jobs", "Open agent jobs by state (Temporal visibility)")
    failing = False
    while not stop.is_set():
        try:
            for state in JobState:
                found = await client.count_workflows(f"{open_jobs} AND JobState = '{state.value}'")
                gauge.set(found.count, {"state": state.value})
            failing = False
        except RPCError as err:  # Temporal away: the gauge keeps its last values until it is back
            if not failing:
                log.warning("conductor_jobs gauge not updated: %s", err)
            failing = True
        try:
            await asyncio.wait_for(stop.wait(), timeout=every)
        except TimeoutError:
            pass
