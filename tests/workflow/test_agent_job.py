"""AgentJobWorkflow's paths on the time-skipping server with scripted activities: a lost agent relaunched,
the agent's time limit, cancel then retry, and the repository claim in FIFO order. Seconds, not minutes:
the fast lane for a change to the job workflow (`make test-fast`).
"""

import asyncio
import gc
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from temporalio import activity
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.worker import Worker

from activities.claims import ClaimChecks
from contracts.activity_io import (
    AwaitAgentInput,
    FailureNoteInput,
    FailureNoteResult,
    LaunchAgentInput,
    LaunchAgentResult,
    PublishInput,
    PublishResult,
    StageTaskFilesInput,
    StageTaskFilesResult,
    StopAgentInput,
)
from contracts.claims import claim_workflow_id
from contracts.jobs import AgentResult, AgentStatus, JobResult, JobSpec, JobState, WorkItem
from contracts.operator import CancelRequest, RetryRequest
from contracts.policies import JobPolicy
from contracts.routing import RepoRoute
from tests.helpers import wait_for
from workflows.agent_job import AgentJobWorkflow
from workflows.repo_claim import RepoClaimWorkflow

SUCCEED, CRASH, HANG = "succeed", "crash", "hang"


@dataclass
class ScriptedAgents:
    """Each launch of a job takes the next behaviour from its script (default: succeed)."""

    scripts: dict[str, list[str]] = field(default_factory=dict)
    launches: list[tuple[str, int]] = field(default_factory=list)
    stops: list[tuple[str, int]] = field(default_factory=list)
    runs: list[tuple[str, str]] = field(default_factory=list)  # (job, "start" | "end") in order
    notes: list[str] = field(default_factory=list)
    hold: asyncio.Event = field(default_factory=asyncio.Event)
    # Each launch of a job names the next launching-host queue from its list (default: none, any replica).
    host_queues: dict[str, list[str]] = field(default_factory=dict)

    def activities(self) -> list:
        return [self.stage, self.launch, self.await_result, self.stop, self.publish, self.note]

    @activity.defn(name="stage_task_files")
    async def stage(self, input: StageTaskFilesInput) -> StageTaskFilesResult:
        return StageTaskFilesResult(files=["job.json"])

    @activity.defn(name="launch_agent")
    async def launch(self, input: LaunchAgentInput) -> LaunchAgentResult:
        self.launches.append((input.job_id, input.attempt))
        hosts = self.host_queues.get(input.job_id, [])
        return LaunchAgentResult(
            agent_id=f"scripted:{input.job_id}:{input.attempt}",
            launcher="scripted",
            host_task_queue=hosts.pop(0) if hosts else "",
        )

    @activity.defn(name="await_agent_result")
    async def await_result(self, input: AwaitAgentInput) -> AgentResult:
        script = self.scripts.get(input.job_id, [])
        behaviour = script.pop(0) if script else SUCCEED
        self.runs.append((input.job_id, "start"))
        try:
            if behaviour == CRASH:
                raise ApplicationError(
                    "agent scripted:1 exited without a result", type="AgentCrashed", non_retryable=True
                )
            while behaviour == HANG or not self.hold.is_set():
                activity.heartbeat()
                await asyncio.sleep(0.05)  # cancelled (timeout, cancel) here
            return AgentResult(status=AgentStatus.SUCCEEDED, summary="scripted", commit_sha="1" * 40)
        finally:
            self.runs.append((input.job_id, "end"))

    @activity.defn(name="stop_agent")
    async def stop(self, input: StopAgentInput) -> None:
        self.stops.append((input.job_id, input.attempt))

    @activity.defn(name="publish_local")
    async def publish(self, input: PublishInput) -> PublishResult:
        return PublishResult(branch=input.spec.branch, commit_sha="1" * 40)

    @activity.defn(name="leave_failure_note")
    async def note(self, input: FailureNoteInput) -> FailureNoteResult:
        self.notes.append(f"{input.state}: {input.reason}")
        return FailureNoteResult(left_at=["scripted"])


@pytest.fixture
async def agents(ts_env, task_queue) -> AsyncIterator[ScriptedAgents]:
    scripted = ScriptedAgents()
    claims = ClaimChecks(ts_env.client, task_queue)
    async with Worker(
        ts_env.client,
        task_queue=task_queue,
        workflows=[AgentJobWorkflow, RepoClaimWorkflow],
        activities=[*scripted.activities(), claims.request_claim, claims.closed_workflows],
    ):
        yield scripted
        # Leave nothing behind on the shared test server: a workflow task pending with no worker (the idle
        # claim's end, a timer) stops time skipping for every later test in the session.
        try:
            await ts_env.client.get_workflow_handle(claim_workflow_id(repo_for(task_queue))).terminate(
                "test done"
            )
        except RPCError:
            pass  # never started, or already ended


def repo_for(task_queue: str) -> str:
    return f"/srv/{task_queue}.git"


def spec(repo: str, key: str, **policy) -> JobSpec:
    return JobSpec(
        job_id=f"job/ticket/jira/{key}",
        work=WorkItem(kind="ticket", key=key, summary="scripted"),
        route=RepoRoute(repo_url=repo),
        branch=f"conductor/{key}",
        policy=JobPolicy(**{"retry_window_seconds": 0, **policy}),
    )


async def start(client, task_queue: str, job: JobSpec) -> WorkflowHandle:
    return await client.start_workflow(
        AgentJobWorkflow.run, job, id=job.job_id, task_queue=task_queue, result_type=JobResult
    )


def new_key() -> str:
    return f"TS-{uuid.uuid4().hex[:6].upper()}"


async def test_a_crashed_agent_is_relaunched_as_a_new_attempt(ts_env, task_queue, agents):
    job = spec(repo_for(task_queue), new_key(), max_agent_attempts=3)
    agents.scripts[job.job_id] = [CRASH, CRASH, SUCCEED]
    agents.hold.set()
    result = await (await start(ts_env.client, task_queue, job)).result()
    assert (result.state, result.attempt) == (JobState.SUCCEEDED, 3)
    assert agents.launches == [(job.job_id, 1), (job.job_id, 2), (job.job_id, 3)]
    assert agents.stops == agents.launches  # every attempt's agent stopped, the lost ones too


async def test_an_agent_whose_launching_host_is_gone_is_relaunched_on_one_that_is_there(
    ts_env, task_queue, agents
):
    job = spec(repo_for(task_queue), new_key(), launching_host_timeout_seconds=1)
    gone, here = f"{task_queue}/host/gone", f"{task_queue}/host/here"
    agents.host_queues[job.job_id] = [gone, here]
    agents.hold.set()
    # Only `here` has a worker: the watch and the stop of `gone`'s agent are never taken.
    async with Worker(ts_env.client, task_queue=here, activities=[agents.await_result, agents.stop]):
        handle = await start(ts_env.client, task_queue, job)
        result = await handle.result()
        status = await handle.query(AgentJobWorkflow.status)
    assert (result.state, result.attempt) == (JobState.SUCCEEDED, 2)
    assert agents.launches == [(job.job_id, 1), (job.job_id, 2)]
    assert agents.runs == [(job.job_id, "start"), (job.job_id, "end")]  # only attempt 2 was watched
    assert agents.stops == [(job.job_id, 2)]
    assert any(f"launching conductor ({gone}) did not take" in line for line in status.history)
    assert any("launching conductor gone: agent scripted:" in line for line in status.history)


async def test_crashes_past_the_limit_end_crashed_with_a_note(ts_env, task_queue, agents):
    job = spec(repo_for(task_queue), new_key(), max_agent_attempts=2)
    agents.scripts[job.job_id] = [CRASH, CRASH]
    with pytest.raises(WorkflowFailureError):
        await (await start(ts_env.client, task_queue, job)).result()
    assert len(agents.launches) == 2
    assert agents.notes == ["CRASHED: agent scripted:1 exited without a result (attempt 2 of 2)"]


async def test_an_agent_past_its_time_limit_ends_timed_out(ts_env, task_queue, agents):
    # Real seconds: the time-skipping server does not skip while an activity (the heartbeating watcher) runs.
    job = spec(repo_for(task_queue), new_key(), agent_timeout_seconds=2)
    agents.scripts[job.job_id] = [HANG]
    handle = await start(ts_env.client, task_queue, job)
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    status = await handle.query(AgentJobWorkflow.status)
    assert status.state == JobState.TIMED_OUT
    assert "did not finish within 2s" in status.reason
    assert agents.stops == [(job.job_id, 1)]


async def test_cancel_then_retry_runs_a_new_attempt(ts_env, task_queue, agents):
    job = spec(repo_for(task_queue), new_key(), retry_window_seconds=3600)
    handle = await start(ts_env.client, task_queue, job)

    async def running() -> bool:
        return (await handle.query(AgentJobWorkflow.status)).state == JobState.RUNNING

    await wait_for(running, timeout=20, interval=0.05)
    await handle.signal(AgentJobWorkflow.cancel, CancelRequest(by="alice", reason="wrong repository"))

    async def cancelled() -> bool:
        return (await handle.query(AgentJobWorkflow.status)).state == JobState.CANCELLED

    await wait_for(cancelled, timeout=20, interval=0.05)
    assert agents.notes == ["CANCELLED: cancelled by alice: wrong repository"]
    agents.hold.set()
    await handle.signal(AgentJobWorkflow.retry, RetryRequest(by="bob"))
    result = await handle.result()
    assert (result.state, result.attempt) == (JobState.SUCCEEDED, 2)
    assert agents.stops[0] == (job.job_id, 1)  # the cancelled attempt's agent was stopped


async def test_jobs_of_one_repository_take_turns_in_order(ts_env, task_queue, agents):
    repo = repo_for(task_queue)
    jobs = [spec(repo, new_key()) for _ in range(3)]
    handles = []
    for job in jobs:
        handles.append(await start(ts_env.client, task_queue, job))

        async def queued_or_running(handle=handles[-1]) -> bool:
            return (await handle.query(AgentJobWorkflow.status)).state in (JobState.QUEUED, JobState.RUNNING)

        await wait_for(queued_or_running, timeout=20, interval=0.05)
    await asyncio.sleep(0.5)
    # One at a time: only the first runs while the others wait their turn.
    assert [job for job, what in agents.runs if what == "start"] == [jobs[0].job_id]
    agents.hold.set()
    for handle in handles:
        assert (await handle.result()).state == JobState.SUCCEEDED
    assert agents.runs == [(job.job_id, what) for job in jobs for what in ("start", "end")]


async def test_a_run_dropped_by_a_stopped_worker_releases_nothing_from_outside_its_loop(
    ts_env, task_queue, monkeypatch
):
    """A worker that stops keeps its cached runs; Python later collects their coroutines, which runs their
    `finally` blocks outside any workflow loop. Those must not call workflow APIs (the SDK raises, and
    prints one traceback per job on every drain); the next worker replays the run and releases then."""
    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    scripted = ScriptedAgents()
    claims = ClaimChecks(ts_env.client, task_queue)
    job = spec(repo_for(task_queue), new_key())
    async with Worker(
        ts_env.client,
        task_queue=task_queue,
        workflows=[AgentJobWorkflow, RepoClaimWorkflow],
        activities=[*scripted.activities(), claims.request_claim, claims.closed_workflows],
    ) as worker:
        handle = await start(ts_env.client, task_queue, job)

        async def running() -> bool:
            return (await handle.query(AgentJobWorkflow.status)).state == JobState.RUNNING

        await wait_for(running, timeout=20, interval=0.05)
    del worker
    gc.collect()
    for workflow_id in (job.job_id, claim_workflow_id(repo_for(task_queue))):
        try:
            await ts_env.client.get_workflow_handle(workflow_id).terminate("test done")
        except RPCError:
            pass
    assert [f"{hook.object}: {hook.exc_value!r}" for hook in unraisable] == []
