"""What happened to a job's agents, read from Temporal: the job workflows' histories and pending activities.

Tests decide outcomes from here (or the blob store, the remote git), never from a conductor's state directory:
- `agent_launches`: each `launch_agent` activity the jobs scheduled (the job workflow calls the launcher by that
  launcher-neutral name, workflows/agent_job.py), with its attempt and, once it completed, the agent's id;
  every run of each job, following continue-as-new back from the latest run;
- `accepted_results`: the agent results that completed the jobs' await activities (the gateway accepted them);
- `live_agent_beat`: the heartbeat details the gateway put on a running await activity (phase, step states);
- `relayed_steps`: the step states last relayed to the job's `progress` signal (the final ones, after a result).

Histories are fetched concurrently, at most FETCH_CONCURRENCY at a time: 210 histories of 20 activities each
took 2.7 s on this machine's 2 cores at a load average of 10.
"""

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC

from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from contracts.activity_io import LaunchAgentInput, LaunchAgentResult
from contracts.jobs import AgentProgress, AgentResult
from tests.helpers import wait_for

LAUNCH_ACTIVITY = "launch_agent"
AWAIT_ACTIVITY = "await_agent_result"
FETCH_CONCURRENCY = 16


@dataclass(frozen=True)
class Launch:
    job_id: str
    attempt: int
    # The launcher's handle (a pid for `local`); empty while the launch has not completed.
    agent_id: str = ""
    # When the launch completed (Unix time, Temporal's clock); 0 while it has not.
    launched_at: float = 0.0
    # The launching conductor's own task queue (a local agent's host); empty for Fargate or before completion.
    host_task_queue: str = ""


async def job_ids(client: Client, query: str) -> list[str]:
    """The ids of the AgentJobWorkflow executions the visibility query finds (each id once)."""
    found = {wf.id async for wf in client.list_workflows(f"WorkflowType = 'AgentJobWorkflow' AND {query}")}
    return sorted(found)


async def job_histories(client: Client, ids: Iterable[str]) -> dict[str, list[list[HistoryEvent]]]:
    """Each job's runs' events, oldest run first (event ids start again in each run); a job Temporal does
    not know has no run."""
    bound = asyncio.Semaphore(FETCH_CONCURRENCY)

    async def runs_of(job_id: str) -> list[list[HistoryEvent]]:
        runs, run_id = [], None
        async with bound:
            while True:
                handle = client.get_workflow_handle(job_id, run_id=run_id)
                try:
                    events = [e async for e in handle.fetch_history_events()]
                except RPCError as err:
                    if err.status == RPCStatusCode.NOT_FOUND and run_id is None:
                        return []
                    raise
                runs.insert(0, events)
                started = events[0].workflow_execution_started_event_attributes
                if not started.continued_execution_run_id:
                    break
                run_id = started.continued_execution_run_id
        return runs

    ids = sorted(set(ids))
    return dict(zip(ids, await asyncio.gather(*(runs_of(i) for i in ids)), strict=True))


def _activities(
    runs: list[list[HistoryEvent]], activity_type: str
) -> list[tuple[HistoryEvent, HistoryEvent | None]]:
    """Each scheduled activity of the type, run by run, with its completed event (None: not completed)."""
    return [pair for events in runs for pair in _run_activities(events, activity_type)]


def _run_activities(
    events: list[HistoryEvent], activity_type: str
) -> list[tuple[HistoryEvent, HistoryEvent | None]]:
    scheduled = {
        e.event_id: e
        for e in events
        if e.HasField("activity_task_scheduled_event_attributes")
        and e.activity_task_scheduled_event_attributes.activity_type.name == activity_type
    }
    completed = {
        e.activity_task_completed_event_attributes.scheduled_event_id: e
        for e in events
        if e.HasField("activity_task_completed_event_attributes")
    }
    return [(event, completed.get(event_id)) for event_id, event in scheduled.items()]


async def agent_launches(client: Client, ids: Iterable[str]) -> list[Launch]:
    """Every agent launch the jobs scheduled, in job and history order."""
    converter = client.data_converter
    launches = []
    for job_id, runs in (await job_histories(client, ids)).items():
        for scheduled, completed in _activities(runs, LAUNCH_ACTIVITY):
            (launch,) = await converter.decode(
                scheduled.activity_task_scheduled_event_attributes.input.payloads, [LaunchAgentInput]
            )
            if completed is None:
                launches.append(Launch(job_id, launch.attempt))
                continue
            (result,) = await converter.decode(
                completed.activity_task_completed_event_attributes.result.payloads, [LaunchAgentResult]
            )
            at = completed.event_time.ToDatetime(UTC).timestamp()
            launches.append(Launch(job_id, launch.attempt, result.agent_id, at, result.host_task_queue))
    return launches


async def accepted_results(client: Client, ids: Iterable[str]) -> dict[str, list[AgentResult]]:
    """Each job's agent results that completed an await activity (the gateway accepted them), in order."""
    converter = client.data_converter
    accepted = {}
    for job_id, runs in (await job_histories(client, ids)).items():
        accepted[job_id] = [
            (
                await converter.decode(
                    completed.activity_task_completed_event_attributes.result.payloads, [AgentResult]
                )
            )[0]
            for _, completed in _activities(runs, AWAIT_ACTIVITY)
            if completed is not None
        ]
    return accepted


async def accepted_result(client: Client, job_id: str, timeout: float = 30.0) -> AgentResult:
    """The one result the job accepted, waited for (bounded).

    The gateway's `complete` of the await activity returns before its events are in the history a client
    reads: the gateway relays a `progress` signal just before, and while the workflow task handling that
    signal runs, the server buffers the activity's completion events and appends them when the task
    completes (seen: a read right after the upload found no await activity pending, the workflow task
    STARTED, and no completion in the history; about 1 run in 5 at load 6)."""

    async def one() -> list[AgentResult] | None:
        return (await accepted_results(client, [job_id]))[job_id] or None

    (result,) = await wait_for(one, timeout=timeout)
    return result


async def live_agent_beat(client: Client, job_id: str) -> dict | None:
    """The last heartbeat details of the job's running await activity (`{"phase", "steps", "at"}`, as the
    gateway records them: conductor_worker/gateway/agent_channel.py); None before the first beat."""
    described = await client.get_workflow_handle(job_id).describe()
    for pending in described.raw_description.pending_activities:
        if pending.activity_type.name == AWAIT_ACTIVITY and pending.heartbeat_details.payloads:
            details = await client.data_converter.decode(pending.heartbeat_details.payloads, [dict])
            return details[0]
    return None


async def relayed_steps(client: Client, job_id: str) -> dict[str, str]:
    """The step states in the last `progress` signal the gateway relayed to the job (before a result is
    accepted the gateway relays the result's final states): {} when none was relayed."""
    steps: dict[str, str] = {}
    for event in (e for run in (await job_histories(client, [job_id]))[job_id] for e in run):
        if event.HasField("workflow_execution_signaled_event_attributes"):
            signaled = event.workflow_execution_signaled_event_attributes
            if signaled.signal_name == "progress":
                (progress,) = await client.data_converter.decode(signaled.input.payloads, [AgentProgress])
                steps = progress.steps
    return steps
