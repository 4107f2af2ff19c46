"""TLS and mTLS on the agent gateway, with certificates from scripts/make-local-ca.sh."""

import asyncio
import ssl
import subprocess
from pathlib import Path

import grpc
import httpx
import pytest
from pydantic import SecretStr

from conductor_worker.gateway.server import start_gateway
from conductor_worker.pool_api.run_script import run_script
from conductor_worker.tls import TlsConfigError
from contracts.jobs import JobState
from proto.conductor.v1 import agent_pb2, agent_pb2_grpc
from tests.helpers import free_port, fresh_key, ticket_result, wait_for
from tests.integration.test_agent_relaunch import start_ticket
from tests.pool_helpers import JOIN_TOKEN, pool_agent, stop_agent

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "make-local-ca.sh"


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("local-ca")
    subprocess.run(["bash", str(SCRIPT), str(out)], check=True, capture_output=True, timeout=60)
    return out


def tls_settings(settings, certs: Path, mutual: bool):
    update = {
        "tls_cert_file": certs / "server.pem",
        "tls_key_file": certs / "server.key",
        "agent_tls_ca_file": certs / "ca.pem",
    }
    if mutual:
        update |= {
            "tls_client_ca_file": certs / "ca.pem",
            "agent_tls_cert_file": certs / "client.pem",
            "agent_tls_key_file": certs / "client.key",
        }
    return settings.model_copy(update=update)


async def handshake_error(channel: grpc.aio.Channel) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await agent_pb2_grpc.AgentServiceStub(channel).Handshake(
            agent_pb2.HandshakeRequest(), metadata=(("authorization", "Bearer x"),), timeout=5
        )
    return refused.value.code()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mutual", [False, True], ids=["tls", "mtls"])
async def test_a_job_runs_over_tls_and_plaintext_is_refused(client, settings, start_conductor, certs, mutual):
    settings = tls_settings(settings, certs, mutual)
    await start_conductor(settings)
    key = fresh_key()
    await start_ticket(client, settings, key)
    result = await ticket_result(client, key)
    assert result.state == JobState.SUCCEEDED  # the launched agent handshook, downloaded, uploaded over TLS

    server, port = await start_gateway(settings.model_copy(update={"gateway_listen": "127.0.0.1:0"}))
    try:
        address = f"127.0.0.1:{port}"
        async with grpc.aio.insecure_channel(address) as plaintext:
            assert await handshake_error(plaintext) == grpc.StatusCode.UNAVAILABLE
        server_only = grpc.ssl_channel_credentials((certs / "ca.pem").read_bytes())
        async with grpc.aio.secure_channel(address, server_only) as tls_without_client_cert:
            code = await handshake_error(tls_without_client_cert)
        # Under mTLS the TLS handshake itself fails; under TLS the call gets as far as the token check.
        assert code == (grpc.StatusCode.UNAVAILABLE if mutual else grpc.StatusCode.UNAUTHENTICATED)
    finally:
        await server.stop(None)


async def test_half_a_tls_configuration_is_a_clear_error(settings, certs):
    broken = settings.model_copy(
        update={"tls_cert_file": certs / "server.pem", "gateway_listen": "127.0.0.1:0"}
    )
    with pytest.raises(TlsConfigError, match="needs both CONDUCTOR_TLS_CERT_FILE and CONDUCTOR_TLS_KEY_FILE"):
        await start_gateway(broken)


@pytest.mark.timeout(120)
async def test_pool_agents_use_https_with_client_certificates(
    client, settings, start_conductor, certs, tmp_path
):
    settings = tls_settings(settings, certs, mutual=True).model_copy(
        update={"rest_listen": f"127.0.0.1:{free_port()}", "pool_join_token": SecretStr(JOIN_TOKEN)}
    )
    await start_conductor(settings)
    url = f"https://{settings.rest_listen}"
    await wait_for(lambda: _serving(url, certs), timeout=30)
    async with httpx.AsyncClient(verify=str(certs / "ca.pem")) as no_client_cert:
        with pytest.raises(httpx.HTTPError):  # mTLS: the TLS handshake fails without a client certificate
            await no_client_cert.get(f"{url}/openapi.json")
    tls_args = ("--tls-ca", str(certs / "ca.pem"), "--tls-cert", str(certs / "client.pem"))
    agent = pool_agent(
        [url],
        "tls-agent",
        tmp_path / "agent.log",
        extra_args=(*tls_args, "--tls-key", str(certs / "client.key")),
    )
    try:
        result = await run_script(
            client, "echo over-mtls", capability="shell", timeout=30, task_queue=settings.task_queue
        )
    finally:
        # In a thread: this event loop serves the conductor, which must still answer the agent's report of
        # the script (run_script can return before that answer is sent). Blocking here wedged both until
        # the wait's timeout: the agent waited for its report, the report for this loop.
        exit_code = await asyncio.to_thread(stop_agent, agent)
    assert (result.status, result.exit_code, result.stdout.strip()) == ("completed", 0, "over-mtls")
    assert exit_code == 0


async def _serving(url: str, certs: Path) -> bool:
    context = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    context.load_cert_chain(str(certs / "client.pem"), str(certs / "client.key"))
    try:
        async with httpx.AsyncClient(verify=context) as http:
            return (await http.get(f"{url}/openapi.json")).status_code == 200
    except httpx.HTTPError:
        return False
