"""The agent channel through Temporal, on the dev server with the real gateway, workflow and await activity.

The test plays the agent over gRPC (handshake, heartbeats, result) with a real per-job token; only the
launcher, stager and publisher are scripted (no process starts), so each path takes seconds:
a result through the gateway completes the job; a silent agent is found by the await activity's heartbeat
timeout and relaunched; a cancel reaches the agent in its heartbeat reply; a superseded attempt's result is
refused by Temporal even when the gateway's own disk does not know of the newer attempt, and another
replica's gateway, on its own state dir, completes that newer attempt (and, with the protection off, the
superseded agent's result decides the job, or, with only the ended-attempt check off, that agent is never
told to stop); a job run from before the channel (its await activity's id assigned by Temporal) is still
completed.
"""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from pydantic import SecretStr
from temporalio import activity, workflow
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.agent_results import SILENCE_WINDOWS, AgentResultWatcher
from conductor_worker.config import Settings
from conductor_worker.gateway import agent_channel
from conductor_worker.gateway.agent_channel import AgentChannel
from conductor_worker.gateway.server import start_gateway
from contracts.activity_io import (
    AgentChannelState,
    AwaitAgentInput,
    StageTaskFilesInput,
    StageTaskFilesResult,
    agent_watch_activity_id,
)
from contracts.claims import claim_workflow_id
from contracts.jobs import AgentResult, JobResult, JobSpec, JobState, WorkItem
from contracts.operator import CancelRequest
from contracts.policies import JobPolicy
from contracts.routing import RepoRoute
from proto.conductor.v1 import agent_pb2, agent_pb2_grpc
from security.tokens import mint_token
from tests.agent_job_harness import AgentsStartedByTheTest, job_worker
from tests.helpers import stage_attempt, wait_for
from workflows.agent_job import AgentJobWorkflow

HEARTBEAT_TIMEOUT = 2.0


@dataclass(kw_only=True)
class ScriptedHost(AgentsStartedByTheTest):
    """Stages into this replica's job store (or, from `elsewhere_from` on, another replica's), launches
    nothing; the test is the agent."""

    settings: Settings
    other: Settings
    elsewhere_from: int = 1_000
    heartbeat_timeout_seconds: float = HEARTBEAT_TIMEOUT

    @activity.defn(name="stage_task_files")
    async def stage(self, input: StageTaskFilesInput) -> StageTaskFilesResult:
        settings = self.other if input.attempt >= self.elsewhere_from else self.settings
        stage_attempt(settings, input.spec.job_id, input.attempt)
        return StageTaskFilesResult(files=[])


@dataclass
class Conductor:
    client: Client
    settings: Settings
    host: ScriptedHost
    address: str


@pytest.fixture
async def conductor(client: Client, settings: Settings, tmp_path: Path) -> AsyncIterator[Conductor]:
    # Replicas share the token secret and Temporal, nothing else.
    settings = settings.model_copy(update={"token_secret": SecretStr(uuid.uuid4().hex)})
    host = ScriptedHost(
        settings=settings, other=settings.model_copy(update={"state_dir": tmp_path / "other-replica"})
    )
    server, port = await start_gateway(settings, client)
    try:
        async with job_worker(client, settings, host, handshake_timeout_seconds=30):
            yield Conductor(client, settings, host, f"127.0.0.1:{port}")
            try:
                await client.get_workflow_handle(claim_workflow_id(repo(settings))).terminate("test done")
            except RPCError:
                pass  # never started, or already ended
    finally:
        await server.stop(grace=None)


def repo(settings: Settings) -> str:
    return f"/srv/{settings.task_queue}.git"


async def start_job(conductor: Conductor) -> WorkflowHandle:
    key = f"CH-{uuid.uuid4().hex[:6].upper()}"
    spec = JobSpec(
        job_id=f"job/ticket/jira/{key}",
        work=WorkItem(kind="ticket", key=key, summary="channel"),
        route=RepoRoute(repo_url=repo(conductor.settings)),
        branch=f"conductor/{key}",
        policy=JobPolicy(retry_window_seconds=0, max_agent_attempts=3),
    )
    return await conductor.client.start_workflow(
        AgentJobWorkflow.run,
        spec,
        id=spec.job_id,
        task_queue=conductor.settings.task_queue,
        result_type=JobResult,
    )


class FakeAgent:
    """The agent's side of the gateway protocol, as agent_runtime speaks it."""

    def __init__(self, conductor: Conductor, job_id: str, attempt: int) -> None:
        token = mint_token(conductor.settings.signing_secret(), job_id, attempt, ttl_seconds=600)
        self._metadata = (("authorization", f"Bearer {token}"),)
        self._channel = grpc.aio.insecure_channel(conductor.address)
        self._stub = agent_pb2_grpc.AgentServiceStub(self._channel)

    async def handshake(self) -> None:
        await self._stub.Handshake(agent_pb2.HandshakeRequest(hostname="test"), metadata=self._metadata)

    async def beat(self, **steps: str) -> agent_pb2.HeartbeatResponse:
        request = agent_pb2.HeartbeatRequest(
            phase="running",
            steps=[agent_pb2.StepState(name=name, status=status) for name, status in steps.items()],
        )
        return await self._stub.Heartbeat(request, metadata=self._metadata)

    async def report(self, summary: str) -> agent_pb2.UploadResultResponse:
        result = agent_pb2.AgentResult(status="SUCCEEDED", summary=summary, commit_sha="2" * 40)

        async def messages():
            yield agent_pb2.UploadResultRequest(result=result)

        return await self._stub.UploadResult(messages(), metadata=self._metadata)

    async def close(self) -> None:
        await self._channel.close()


async def running(handle: WorkflowHandle, attempt: int = 1) -> bool:
    status = await handle.query(AgentJobWorkflow.status)
    return status.state == JobState.RUNNING and status.attempt == attempt


@pytest.mark.timeout(60)
async def test_a_result_through_the_gateway_completes_the_job(conductor):
    handle = await start_job(conductor)
    agent = FakeAgent(conductor, handle.id, 1)
    await wait_for(lambda: running(handle), timeout=20)
    await agent.handshake()
    beat = await agent.beat(clone="SUCCEEDED", code="RUNNING")
    assert not beat.cancel_requested

    async def steps_shown() -> bool:
        await agent.beat(clone="SUCCEEDED", code="RUNNING")  # an agent beats on; the relay rides its beats
        progress = (await handle.query(AgentJobWorkflow.status)).progress
        return progress is not None and progress.steps == {"clone": "SUCCEEDED", "code": "RUNNING"}

    # The gateway relays progress to `status`: nothing on any disk is read for it.
    assert await wait_for(steps_shown, timeout=15, interval=0.5)
    reply = await agent.report("done through Temporal")
    result = await asyncio.wait_for(handle.result(), timeout=20)
    await agent.close()

    assert reply.accepted and not reply.duplicate
    assert result.state == JobState.SUCCEEDED and result.attempt == 1
    assert result.agent.summary == "done through Temporal" and result.commit_sha == "2" * 40
    assert conductor.host.launches == [1]
    events = [e async for e in handle.fetch_history_events()]
    completed = [e for e in events if e.HasField("activity_task_completed_event_attributes")]
    scheduled = {
        e.event_id: e.activity_task_scheduled_event_attributes
        for e in events
        if e.HasField("activity_task_scheduled_event_attributes")
    }
    watch = [scheduled[e.activity_task_completed_event_attributes.scheduled_event_id] for e in completed]
    assert any(
        s.activity_type.name == "await_agent_result" and s.activity_id == "agent-attempt-1" for s in watch
    )


@pytest.mark.timeout(60)
async def test_a_silent_agent_is_found_by_the_heartbeat_timeout_and_relaunched(conductor):
    handle = await start_job(conductor)
    first = FakeAgent(conductor, handle.id, 1)
    await wait_for(lambda: running(handle), timeout=20)
    await first.handshake()
    await first.beat(clone="RUNNING")
    silent_from = time.monotonic()  # the agent says nothing more

    assert await wait_for(lambda: running(handle, attempt=2), timeout=30)
    noticed_after = time.monotonic() - silent_from
    second = FakeAgent(conductor, handle.id, 2)
    await second.handshake()
    await second.report("the relaunched agent")
    result = await asyncio.wait_for(handle.result(), timeout=20)
    await first.close()
    await second.close()

    status = await handle.query(AgentJobWorkflow.status)
    assert result.state == JobState.SUCCEEDED and result.attempt == 2
    assert any("CRASHED attempt 1" in line and "sent no heartbeat" in line for line in status.history)
    assert conductor.host.launches == [1, 2] and 1 in conductor.host.stops
    # Temporal's heartbeat timeout, SILENCE_WINDOWS times, plus the retries' 1 s backoff and the relaunch.
    assert HEARTBEAT_TIMEOUT < noticed_after < SILENCE_WINDOWS * (HEARTBEAT_TIMEOUT + 1) + 8, noticed_after
    print(f"silent agent noticed and relaunched after {noticed_after:.1f}s")


@pytest.mark.timeout(60)
async def test_a_cancel_reaches_the_agent_in_its_heartbeat_reply(conductor):
    handle = await start_job(conductor)
    agent = FakeAgent(conductor, handle.id, 1)
    await wait_for(lambda: running(handle), timeout=20)
    await agent.handshake()
    assert not (await agent.beat(code="RUNNING")).cancel_requested

    await handle.signal(AgentJobWorkflow.cancel, CancelRequest(by="operator", reason="not needed"))

    async def told_to_stop() -> bool:
        return (await agent.beat(code="RUNNING")).cancel_requested

    assert await wait_for(told_to_stop, timeout=15)
    with pytest.raises(Exception):  # noqa: B017 - the job ends CANCELLED, a workflow failure
        await asyncio.wait_for(handle.result(), timeout=20)
    assert (await handle.query(AgentJobWorkflow.status)).state == JobState.CANCELLED
    await agent.close()


@pytest.mark.timeout(60)
async def test_a_superseded_attempts_result_is_refused_and_another_replica_takes_the_next(
    conductor, tmp_path
):
    handle, old = await superseded(conductor)

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await old.report("too late")
    beat = await old.beat()
    await old.close()

    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED  # the agent stops retrying
    assert "result refused" in refused.value.details() and "attempt 1 has ended" in refused.value.details()
    assert beat.cancel_requested  # the old agent is told to stop
    assert (await handle.query(AgentJobWorkflow.status)).state == JobState.RUNNING  # attempt 2 still awaited

    # The other replica's gateway (same token secret, nothing else shared but Temporal) takes attempt 2.
    other = conductor.host.other
    server, port = await start_gateway(other, conductor.client)
    try:
        second = FakeAgent(
            Conductor(conductor.client, other, conductor.host, f"127.0.0.1:{port}"), handle.id, 2
        )
        await second.handshake()
        await second.report("through the other replica")
        result = await asyncio.wait_for(handle.result(), timeout=20)
        await second.close()
    finally:
        await server.stop(grace=None)
    assert result.state == JobState.SUCCEEDED and result.attempt == 2
    assert result.agent.summary == "through the other replica"


async def superseded(conductor: Conductor) -> tuple[WorkflowHandle, FakeAgent]:
    """A job on attempt 2, its await activity scheduled, and attempt 1's agent (gone silent) still there.
    Attempt 2 is staged by another replica in a blob store of its own: this gateway's store does not show
    it, so the token check (security/job_access.py) does not refuse attempt 1's token; only Temporal knows."""
    conductor.host.elsewhere_from = 2
    handle = await start_job(conductor)
    old = FakeAgent(conductor, handle.id, 1)
    await wait_for(lambda: running(handle), timeout=20)
    await old.handshake()
    await old.beat()

    async def awaiting_attempt_2() -> bool:
        pending = (await handle.describe()).raw_description.pending_activities
        return any(p.activity_id == agent_watch_activity_id(2) for p in pending)

    assert await wait_for(awaiting_attempt_2, timeout=30)
    return handle, old


@pytest.mark.timeout(60)
async def test_with_its_result_not_held_to_its_attempt_a_superseded_agent_decides_the_job(
    conductor, monkeypatch
):
    """The attack the refusal above stops, with the protection off: the gateway addresses a result to the
    await activity of the attempt its token names (so Temporal refuses an ended attempt's), and turns the
    refusal into PERMISSION_DENIED. Unprotected, addressing whatever await activity the job has open (its
    `agent_channel` query names it), the superseded agent's stale result is accepted and ends the job as
    if attempt 2's agent had done the work."""

    async def unbound(self, job, call) -> None:
        state = await self._client.get_workflow_handle(job.job_id).query(
            "agent_channel", result_type=AgentChannelState
        )
        await call(self._handle(job, state.activity_id))

    monkeypatch.setattr(AgentChannel, "_on_activity", unbound)
    handle, old = await superseded(conductor)

    beat = await old.beat()
    reply = await old.report("too late")
    result = await asyncio.wait_for(handle.result(), timeout=20)
    await old.close()

    assert not beat.cancel_requested  # nor is the old agent told to stop: its beats keep attempt 2 alive
    assert reply.accepted
    assert result.state == JobState.SUCCEEDED and result.attempt == 2
    assert result.agent.summary == "too late"  # attempt 1's result, taken as attempt 2's
    assert conductor.host.launches == [1, 2]


@pytest.mark.timeout(60)
async def test_with_the_ended_attempt_check_off_a_superseded_agent_is_never_stopped(conductor, monkeypatch):
    """What the AttemptEnded check itself adds (the result stays refused by Temporal, per-attempt ids):
    without it the superseded agent's beats say "carry on" and its result is "not recorded yet, send it
    again", so the agent keeps working and retrying instead of stopping (PERMISSION_DENIED above)."""

    async def unchecked(self, job) -> AgentChannelState:
        return await self._client.get_workflow_handle(job.job_id).query(
            "agent_channel", result_type=AgentChannelState
        )

    monkeypatch.setattr(AgentChannel, "_channel_state", unchecked)
    monkeypatch.setattr(agent_channel, "REPORT_PATIENCE_SECONDS", 2.0)  # the default 30 s: same answer
    handle, old = await superseded(conductor)

    beat = await old.beat()
    with pytest.raises(grpc.aio.AioRpcError) as told:
        await old.report("too late")
    await old.close()

    assert not beat.cancel_requested
    assert told.value.code() == grpc.StatusCode.UNAVAILABLE, told.value.details()  # the agent retries
    assert "send it again" in told.value.details()
    assert (await handle.query(AgentJobWorkflow.status)).state == JobState.RUNNING  # still awaits attempt 2
    await handle.terminate("test done")


@workflow.defn(name="JobFromBeforeTheChannel")
class JobFromBeforeTheChannel:
    """What a job run started before the channel does on today's code (`agent-channel-through-temporal` not
    patched): it awaits its agent under an id Temporal assigned, and its `agent_channel` names none."""

    @workflow.run
    async def run(self, input: AwaitAgentInput) -> AgentResult:
        return await workflow.execute_activity(
            "await_agent_result",
            input,
            result_type=AgentResult,
            schedule_to_close_timeout=timedelta(seconds=60),
            heartbeat_timeout=timedelta(seconds=15),
        )

    @workflow.query
    def agent_channel(self) -> AgentChannelState:
        return AgentChannelState(attempt=1, open=True)


@pytest.mark.timeout(60)
async def test_a_job_from_before_the_channel_is_found_by_describe_and_completed(conductor):
    job_id = f"job/ticket/jira/OLD-{uuid.uuid4().hex[:6].upper()}"
    stage_attempt(conductor.settings, job_id, 1)
    queue = f"{conductor.settings.task_queue}-before"
    async with Worker(
        conductor.client,
        task_queue=queue,
        workflows=[JobFromBeforeTheChannel],
        activities=[AgentResultWatcher().await_agent_result],
        workflow_runner=UnsandboxedWorkflowRunner(),  # a test module's workflow; determinism is not the point
    ):
        handle = await conductor.client.start_workflow(
            JobFromBeforeTheChannel.run,
            AwaitAgentInput(job_id=job_id, attempt=1, agent_id="scripted:old"),
            id=job_id,
            task_queue=queue,
        )

        async def awaited() -> str:
            pending = (await handle.describe()).raw_description.pending_activities
            return pending[0].activity_id if pending else ""

        assigned = await wait_for(awaited, timeout=20)
        agent = FakeAgent(conductor, job_id, 1)
        await agent.handshake()
        assert not (await agent.beat(code="RUNNING")).cancel_requested
        await agent.report("reported to an old run")
        result = await asyncio.wait_for(handle.result(), timeout=20)
        await agent.close()

    assert not assigned.startswith("agent-attempt-")
    assert result.summary == "reported to an old run"
