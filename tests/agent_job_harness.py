"""A real `conductor-agent` in a real job: the dev server runs the AgentJobWorkflow with the real await
activity and repository claim, and the gateway under test turns what the agent says into Temporal calls.

Staging and launching are the test's (it stages the task files with tests/agent_helpers.stage_job and
starts the agent with start_agent), so the scripted activities here do nothing but what the job needs to
go on: the test then reads what the agent reported from Temporal (tests/job_history.py).
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError
from temporalio.worker import Worker

from activities.agent_results import AgentResultWatcher
from activities.claims import ClaimChecks
from conductor_worker.config import Settings
from conductor_worker.gateway.server import start_gateway
from contracts.activity_io import (
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
from contracts.jobs import JobResult, JobSpec, JobState, WorkItem
from contracts.policies import JobPolicy
from contracts.routing import RepoRoute
from tests.agent_helpers import start_agent
from tests.helpers import wait_for
from workflows.agent_job import AgentJobWorkflow
from workflows.repo_claim import RepoClaimWorkflow


@dataclass
class AgentsStartedByTheTest:
    """The job's host activities when the test stages and starts the agent itself (or is the agent)."""

    # How long the agent may stay silent to Temporal before its attempt is lost.
    heartbeat_timeout_seconds: float
    # The attempts launched and stopped, in order.
    launches: list[int] = field(default_factory=list)
    stops: list[int] = field(default_factory=list)

    def activities(self) -> list:
        return [self.stage, self.launch, self.stop, self.publish, self.note]

    @activity.defn(name="stage_task_files")
    async def stage(self, input: StageTaskFilesInput) -> StageTaskFilesResult:
        return StageTaskFilesResult(files=[])  # staged by the test before the job started

    @activity.defn(name="launch_agent")
    async def launch(self, input: LaunchAgentInput) -> LaunchAgentResult:
        self.launches.append(input.attempt)
        return LaunchAgentResult(
            agent_id=f"test:{input.attempt}",
            launcher="test",
            heartbeat_timeout_seconds=self.heartbeat_timeout_seconds,
        )

    @activity.defn(name="stop_agent")
    async def stop(self, input: StopAgentInput) -> None:
        self.stops.append(input.attempt)  # the test owns the agent's process

    @activity.defn(name="publish_local")
    async def publish(self, input: PublishInput) -> PublishResult:
        return PublishResult(branch=input.spec.branch, commit_sha=input.result.commit_sha)

    @activity.defn(name="leave_failure_note")
    async def note(self, input: FailureNoteInput) -> FailureNoteResult:
        return FailureNoteResult(left_at=[])


@dataclass
class AgentJobs:
    client: Client
    settings: Settings
    started: list[WorkflowHandle] = field(default_factory=list)

    async def start(self, job_id: str) -> WorkflowHandle:
        """Start the job (its attempt 1 staged already) and wait until it awaits its agent."""
        key = job_id.rsplit("/", 1)[1]
        spec = JobSpec(
            job_id=job_id,
            work=WorkItem(kind="ticket", key=key, summary="a job for the agent tests"),
            route=RepoRoute(repo_url=f"/srv/{self.settings.task_queue}.git"),
            branch=f"conductor/{key}",
            policy=JobPolicy(retry_window_seconds=0, max_agent_attempts=1),
        )
        handle = await self.client.start_workflow(
            AgentJobWorkflow.run, spec, id=job_id, task_queue=self.settings.task_queue, result_type=JobResult
        )
        self.started.append(handle)
        await _wait_running(handle)
        return handle

    async def run_agent(self, job_id: str, token: str, workdir: Path) -> int:
        """Start the job, serve its agent with a gateway on the settings' address until the agent exits;
        returns the agent's exit code."""
        await self.start(job_id)
        gateway, _ = await start_gateway(self.settings, self.client)
        try:
            agent = await start_agent(self.settings.gateway_listen, token, workdir)
            return await agent.wait()
        finally:
            await gateway.stop(grace=None)


async def _wait_running(handle: WorkflowHandle) -> None:
    async def running() -> bool:
        status = await handle.query(AgentJobWorkflow.status)
        return status.state == JobState.RUNNING and status.attempt == 1

    await wait_for(running, timeout=30)


def job_worker(
    client: Client, settings: Settings, host: AgentsStartedByTheTest, handshake_timeout_seconds: float
) -> Worker:
    """A worker for the settings' task queue running the real job workflow, await activity and claim, with
    `host`'s activities for staging, launching and publishing."""
    claims = ClaimChecks(client, settings.task_queue)
    watcher = AgentResultWatcher(handshake_timeout_seconds=handshake_timeout_seconds)
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=[AgentJobWorkflow, RepoClaimWorkflow],
        activities=[
            *host.activities(),
            watcher.await_agent_result,
            claims.request_claim,
            claims.closed_workflows,
        ],
    )


@asynccontextmanager
async def agent_jobs(
    client: Client, settings: Settings, heartbeat_timeout_seconds: float = 30.0
) -> AsyncIterator[AgentJobs]:
    """A worker for the settings' task queue (a test's own: tests/conftest.py's `settings`) running the real
    job workflow; at the end, the jobs still running and the repository claim are terminated."""
    jobs = AgentJobs(client, settings)
    async with job_worker(client, settings, AgentsStartedByTheTest(heartbeat_timeout_seconds), 60):
        try:
            yield jobs
        finally:
            for handle in [
                *jobs.started,
                client.get_workflow_handle(claim_workflow_id(f"/srv/{settings.task_queue}.git")),
            ]:
                try:
                    await handle.terminate("test done")
                except RPCError:
                    pass  # never started, or already ended
