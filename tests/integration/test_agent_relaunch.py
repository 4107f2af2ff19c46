"""A lost agent is relaunched as a new attempt with a new token; a job gives up after a bounded number."""

import asyncio
import os
import signal
import time

import grpc
import pytest
from temporalio.client import WorkflowFailureError
from temporalio.service import RPCError

from conductor_worker.intake.messages import parse_message
from conductor_worker.intake.sqs import SqsIntake
from contracts.ids import ticket_job_id
from contracts.jobs import JobState
from proto.conductor.v1 import agent_pb2, agent_pb2_grpc
from security.tokens import mint_token
from tests.helpers import (
    free_port,
    fresh_key,
    install_fake_codex,
    is_running,
    ticket_body,
    ticket_handle,
    ticket_result,
    wait_for,
)
from tests.job_history import Launch, agent_launches, live_agent_beat
from workflows.agent_job import AgentJobWorkflow

SLOW_CODEX = """#!/bin/sh
# A coding agent that takes a few seconds, so the test can kill the agent mid-run.
sleep 4
echo "changed by the stand-in coding agent" > codex-change.txt
echo "stand-in codex: done"
"""


@pytest.fixture
def slow_codex(tmp_path, monkeypatch) -> None:
    install_fake_codex(tmp_path / "bin", SLOW_CODEX, monkeypatch)


async def launch(client, key: str, attempt: int) -> Launch | None:
    """The job's completed launch of `attempt`, from its history in Temporal."""
    launches = await agent_launches(client, [ticket_job_id("jira", key)])
    return next((x for x in launches if x.attempt == attempt and x.agent_id), None)


def agent_pid(launch: Launch) -> int:
    return int(launch.agent_id.removeprefix("local:"))


async def handshaken(client, key: str) -> bool:
    """The agent's handshake is recorded on its await activity (its heartbeat details in Temporal)."""
    try:
        return await live_agent_beat(client, ticket_job_id("jira", key)) is not None
    except RPCError:  # the job is not started yet
        return False


async def start_ticket(client, settings, key: str) -> None:
    await SqsIntake(client, settings, None).start_ticket(parse_message(ticket_body(key)))


@pytest.mark.timeout(120)
async def test_a_killed_agent_is_relaunched_and_its_old_token_refused(
    client, settings, start_conductor, slow_codex
):
    # A known gateway port, so the test can present the old token to it afterwards.
    settings = settings.model_copy(update={"coding_agent": "codex", "gateway_listen": free_address()})
    await start_conductor(settings)
    key = fresh_key()
    await start_ticket(client, settings, key)
    await wait_for(lambda: handshaken(client, key), timeout=60)
    first = agent_pid(await launch(client, key, 1))

    os.killpg(first, signal.SIGKILL)  # the agent and its coding agent, mid-run
    killed_at = time.time()
    second = await wait_for(lambda: launch(client, key, 2), timeout=30)
    relaunched_after = second.launched_at - killed_at
    result = await ticket_result(client, key)

    assert result.state == JobState.SUCCEEDED and result.attempt == 2
    assert relaunched_after < 15, f"crash noticed and agent relaunched after {relaunched_after:.1f}s"
    assert not is_running(first)
    status = await client.get_workflow_handle(result.job_id).query(AgentJobWorkflow.status)
    assert any("CRASHED attempt 1" in line for line in status.history)
    old_token = mint_token(settings.signing_secret(), result.job_id, 1, ttl_seconds=60)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        async with grpc.aio.insecure_channel(settings.agent_gateway_address) as channel:
            await agent_pb2_grpc.AgentServiceStub(channel).Handshake(
                agent_pb2.HandshakeRequest(), metadata=(("authorization", f"Bearer {old_token}"),)
            )
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "superseded attempt" in refused.value.details()
    print(f"agent SIGKILLed; relaunched as attempt 2 after {relaunched_after:.1f}s")


@pytest.mark.timeout(120)
async def test_an_agent_that_never_handshakes_is_relaunched_then_the_job_fails(
    client, settings, start_conductor
):
    nowhere = free_address()  # no gateway listens there: the agent can never handshake
    settings = settings.model_copy(update={"handshake_timeout_seconds": 2, "gateway_public_address": nowhere})
    await start_conductor(settings)
    key = fresh_key()
    await start_ticket(client, settings, key)

    handle = await ticket_handle(client, key)
    with pytest.raises(WorkflowFailureError) as failed:
        await asyncio.wait_for(handle.result(), timeout=90)

    message = failed.value.cause.message
    assert (
        message.startswith("CRASHED: agent local:")
        and "did not handshake within 2s (attempt 3 of 3)" in message
    )
    launches = await agent_launches(client, [ticket_job_id("jira", key)])
    assert [x.attempt for x in launches] == [1, 2, 3]  # and no fourth
    pids = [agent_pid(x) for x in launches]
    assert len(set(pids)) == 3 and not any(is_running(pid) for pid in pids)


def free_address() -> str:
    return f"127.0.0.1:{free_port()}"
