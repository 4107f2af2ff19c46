"""Every gateway call proves its job attempt with a signed token; anything else is refused."""

import asyncio
import sys

import grpc
import pytest

from conductor_worker.gateway.server import start_gateway
from contracts.jobs import TaskFile
from proto.conductor.v1 import agent_pb2, agent_pb2_grpc
from security.tokens import mint_token
from tests.helpers import stage_attempt

JOB = "job/ticket/jira/ENG-42"


@pytest.fixture
async def gateway(settings):
    stage_attempt(settings, JOB, 1, [TaskFile(path="job.json", content="{}")])
    server, port = await start_gateway(settings)
    yield f"127.0.0.1:{port}"
    await server.stop(grace=None)


async def handshake(address: str, token: str | None):
    async with grpc.aio.insecure_channel(address) as channel:
        stub = agent_pb2_grpc.AgentServiceStub(channel)
        metadata = (("authorization", f"Bearer {token}"),) if token is not None else ()
        return await stub.Handshake(agent_pb2.HandshakeRequest(hostname="t"), metadata=metadata)


async def test_valid_token_gets_the_job(gateway, settings):
    token = mint_token(settings.signing_secret(), JOB, 1, ttl_seconds=60)
    reply = await handshake(gateway, token)
    assert (reply.job_id, reply.attempt, [f.path for f in reply.files]) == (JOB, 1, ["job.json"])


@pytest.mark.parametrize(
    ("make_token", "detail"),
    [
        (lambda s: mint_token(b"forged-secret-000000000000000000", JOB, 1, 60), "bad token signature"),
        (lambda s: mint_token(s, JOB, 1, ttl_seconds=-1), "token expired"),
        (lambda s: mint_token(s, JOB, 2, ttl_seconds=60), "unknown job attempt"),
        (lambda s: mint_token(s, "job/other", 1, ttl_seconds=60), "unknown job attempt"),
        (lambda s: "garbage", "malformed token"),
        (lambda s: None, "missing bearer token"),
    ],
)
async def test_bad_tokens_are_refused(gateway, settings, make_token, detail):
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await handshake(gateway, make_token(settings.signing_secret()))
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert detail in info.value.details()


async def test_agent_with_a_forged_token_exits_with_a_clear_error(gateway, tmp_path):
    forged = mint_token(b"forged-secret-000000000000000000", JOB, 1, 60)
    # An asyncio subprocess: the gateway under test serves from this same event loop.
    agent = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agent_runtime",
        "run",
        "--gateway",
        gateway,
        "--token",
        forged,
        "--workdir",
        str(tmp_path / "w"),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(agent.communicate(), timeout=60)
    assert agent.returncode == 77
    assert "conductor-agent: gateway refused the token: bad token signature" in stderr.decode()
