"""Two conductor processes on one Temporal: the one serving an agent's gRPC stream dies, the job completes."""

import asyncio
import os
import signal

import pytest

from contracts.jobs import JobState
from tests.helpers import free_port, fresh_key, install_fake_codex, ticket_result, use_s3_stores, wait_for
from tests.integration.test_agent_relaunch import SLOW_CODEX, start_ticket
from tests.scale_helpers import conductor_process


@pytest.fixture
def slow_codex(tmp_path, monkeypatch) -> None:
    install_fake_codex(tmp_path / "bin", SLOW_CODEX.replace("sleep 4", "sleep 8"), monkeypatch)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("stores", ["local", "s3"])
async def test_the_job_survives_the_conductor_holding_its_agent(
    stores, client, settings, tmp_path, slow_codex, request, monkeypatch
):
    if stores == "s3":
        settings = use_s3_stores(settings, request.getfixturevalue("aws"), monkeypatch)
    ports = [free_port(), free_port()]
    # Agents get both gateways; gRPC's pick_first uses the first and moves to the next when it goes away.
    extra_env = {
        "CONDUCTOR_GATEWAY_PUBLIC_ADDRESS": "ipv4:" + ",".join(f"127.0.0.1:{port}" for port in ports),
        "CONDUCTOR_CODING_AGENT": "codex",
        "CONDUCTOR_HEARTBEAT_INTERVAL_SECONDS": "1",
    }
    logs = [tmp_path / "conductor-a.log", tmp_path / "conductor-b.log"]
    conductors = [
        conductor_process(settings, port, log, extra_env) for port, log in zip(ports, logs, strict=True)
    ]
    try:
        key = fresh_key()
        await start_ticket(client, settings, key)

        async def serving_conductor():
            return next((log for log in logs if log.exists() and "agent handshake" in log.read_text()), None)

        holder = logs.index(await wait_for(serving_conductor, timeout=60))
        os.killpg(conductors[holder].pid, signal.SIGKILL)
        conductors[holder].wait()
        result = await asyncio.wait_for(ticket_result(client, key), timeout=120)
    finally:
        for proc in conductors:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=60)

    assert result.state == JobState.SUCCEEDED
    assert result.attempt == 1, "the agent was relaunched instead of moving to the other conductor"
    survivor = logs[1 - holder].read_text()
    assert "agent result: " in survivor, "the surviving conductor did not take the agent's result"
