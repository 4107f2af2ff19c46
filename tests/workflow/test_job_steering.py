"""The `steer` update of a running job waits for the model gateway's `steering_delivered` signal, on the
time-skipping server with scripted agents and the real steering activities (mailbox in a local blob
store): delivered -> the ack says so at once; never delivered -> it says not, after the bound; duplicate,
stale and early signals change nothing more. The agent's await activity runs throughout, so the server
skips no time: the bound is real seconds, kept short here.
"""

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from temporalio.client import WorkflowUpdateStage
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer, Worker

from activities.claims import ClaimChecks
from activities.steering import SteeringMailbox
from contracts.jobs import JobState
from contracts.operator import CancelRequest, SteerAck, SteeringDelivered, SteerRequest
from stores.blob_store import LocalBlobStore
from stores.mailbox import JobMailbox
from tests.helpers import wait_for
from tests.workflow.test_agent_job import ScriptedAgents, new_key, repo_for, spec, start
from workflows.agent_job import AgentJobWorkflow
from workflows.repo_claim import RepoClaimWorkflow

SHORT_WAIT = 1.5


@asynccontextmanager
async def job_worker(ts_env, task_queue: str, blobs: Path, wait: float) -> AsyncIterator[ScriptedAgents]:
    scripted = ScriptedAgents()
    steering = SteeringMailbox(JobMailbox(LocalBlobStore(blobs)), wait)
    claims = ClaimChecks(ts_env.client, task_queue)
    async with Worker(
        ts_env.client,
        task_queue=task_queue,
        workflows=[AgentJobWorkflow, RepoClaimWorkflow],
        activities=[
            *scripted.activities(),
            claims.request_claim,
            claims.closed_workflows,
            steering.deliver_steering,
            steering.await_steering_delivery,
        ],
    ):
        yield scripted


async def running_job(ts_env, task_queue: str):
    handle = await start(ts_env.client, task_queue, spec(repo_for(task_queue), new_key()))

    async def running() -> bool:
        return (await handle.query(AgentJobWorkflow.status)).state == JobState.RUNNING

    await wait_for(running, timeout=20, interval=0.05)
    return handle


async def replays(handle) -> None:
    """The run's history (signals, the bounded wait's timer) replays on the current code."""
    replayer = Replayer(workflows=[AgentJobWorkflow], data_converter=pydantic_data_converter)
    await replayer.replay_workflow(await handle.fetch_history())


async def steer(handle, text: str):
    return await handle.start_update(
        AgentJobWorkflow.steer,
        SteerRequest(text=text, by="alice"),
        wait_for_stage=WorkflowUpdateStage.ACCEPTED,
        result_type=SteerAck,
    )


async def test_a_delivered_instruction_is_acknowledged_once_the_gateway_signals(ts_env, task_queue, tmp_path):
    async with job_worker(ts_env, task_queue, tmp_path, wait=30) as agents:
        handle = await running_job(ts_env, task_queue)
        started = time.monotonic()
        update = await steer(handle, "Also update CHANGELOG.md")
        # Two replicas' model gateways, and one for an attempt that does not exist yet: harmless.
        await handle.signal(AgentJobWorkflow.steering_delivered, SteeringDelivered(attempt=2, seq=1))
        for _ in range(2):
            await handle.signal(AgentJobWorkflow.steering_delivered, SteeringDelivered(attempt=1, seq=1))
        ack = await update.result()
        took = time.monotonic() - started
        assert (ack.seq, ack.attempt, ack.delivered_to_running_agent) == (1, 1, True)
        assert ack.delivered_to_agent
        assert took < 10, f"the ack took {took:.1f}s: it waited for the bound, not the signal"

        # The second instruction: the duplicates of the first's signal do not count for it.
        started = time.monotonic()
        update = await steer(handle, "And the README")
        await handle.signal(AgentJobWorkflow.steering_delivered, SteeringDelivered(attempt=1, seq=1))
        # Before the signal for #2 the update still waits; then it answers.
        answer = asyncio.ensure_future(update.result())
        await asyncio.sleep(1.0)
        assert not answer.done()
        await handle.signal(AgentJobWorkflow.steering_delivered, SteeringDelivered(attempt=1, seq=2))
        ack = await answer
        assert (ack.seq, ack.delivered_to_agent) == (2, True)
        assert time.monotonic() - started < 10
        agents.hold.set()
        assert (await handle.result()).state == JobState.SUCCEEDED
        await replays(handle)


async def test_an_undelivered_instruction_is_not_acknowledged_after_the_bound(ts_env, task_queue, tmp_path):
    async with job_worker(ts_env, task_queue, tmp_path, wait=SHORT_WAIT) as agents:
        handle = await running_job(ts_env, task_queue)
        # Seen before: a request carried #1 ... but #1 does not exist yet, and a signal cannot make it so.
        await handle.signal(AgentJobWorkflow.steering_delivered, SteeringDelivered(attempt=1, seq=1))
        started = time.monotonic()
        ack = await (await steer(handle, "Also update CHANGELOG.md")).result()
        took = time.monotonic() - started
        assert (ack.delivered_to_running_agent, ack.delivered_to_agent) == (True, False)
        assert SHORT_WAIT <= took < SHORT_WAIT + 10, f"the ack took {took:.1f}s"
        # The mailbox has the entry, for the heartbeat reply, the model gateway and a later attempt.
        entries = JobMailbox(LocalBlobStore(tmp_path)).steering(handle.id)
        assert [entry["text"] for entry in entries] == ["Also update CHANGELOG.md"]
        # A late signal for it changes nothing in what was answered, and fails nothing.
        await handle.signal(AgentJobWorkflow.steering_delivered, SteeringDelivered(attempt=1, seq=1))
        agents.hold.set()
        result = await handle.result()
        assert result.state == JobState.SUCCEEDED
        await replays(handle)


async def test_a_wait_ends_with_its_attempt(ts_env, task_queue, tmp_path):
    """A job cancelled while its `steer` update waits answers not delivered at once, not after the bound."""
    async with job_worker(ts_env, task_queue, tmp_path, wait=60):
        handle = await running_job(ts_env, task_queue)
        started = time.monotonic()
        update = await steer(handle, "Also update CHANGELOG.md")
        await handle.signal(AgentJobWorkflow.cancel, CancelRequest(by="bob"))
        ack = await update.result()
        assert ack.delivered_to_agent is False
        assert time.monotonic() - started < 30
