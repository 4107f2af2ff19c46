"""Conductor replicas as separate processes: each drains alone, and a dead one takes its agents with it.

Issue #12's goal is replicas that share nothing but Temporal and an object store: the drain test gives each
replica its own state dir and runs a job on the one left; the launching-host test runs two replicas told
apart by CONDUCTOR_REPLICA_ID. Which replica launched an agent is read from the job's history in Temporal.
"""

import asyncio
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from pydantic import SecretStr

from contracts.ids import ticket_job_id
from contracts.jobs import JobState, JobStatus
from contracts.policies import JobPolicy
from tests.helpers import free_port, fresh_key, install_fake_codex, is_running, ticket_result, wait_for
from tests.integration.test_agent_relaunch import SLOW_CODEX, start_ticket
from tests.job_history import Launch, agent_launches
from tests.scale_helpers import conductor_process

SECRET = "replicas-test-secret-" + "x" * 16
HOST_TIMEOUT_SECONDS = 3


def stop(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


async def launch_of(client, job_id: str, attempt: int) -> Launch | None:
    """The job's completed launch of `attempt`, from its history in Temporal."""
    launches = await agent_launches(client, [job_id])
    return next((x for x in launches if x.attempt == attempt and x.agent_id), None)


async def logged(log: Path, text: str) -> bool:
    return log.exists() and text in log.read_text()


@pytest.mark.timeout(120)
async def test_a_drained_replica_leaves_the_other_serving_with_its_own_files(client, settings, tmp_path):
    # The token secret from the environment, as in production: no replica writes one to its disk.
    replicas = [
        settings.model_copy(update={"state_dir": tmp_path / name, "token_secret": SecretStr(SECRET)})
        for name in ("a", "b")
    ]
    a, b = replicas
    assert a.host_task_queue != b.host_task_queue
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    procs = [conductor_process(s, free_port(), log) for s, log in zip(replicas, logs, strict=True)]
    try:
        for log in logs:
            await wait_for(lambda log=log: logged(log, "conductor serving"), timeout=30)
        procs[0].send_signal(signal.SIGTERM)
        await wait_for(lambda: asyncio.to_thread(a.ready_path.exists), timeout=30)
        assert await asyncio.to_thread(procs[0].wait, 30) == 0, logs[0].read_text()[-2000:]

        key = fresh_key()
        await start_ticket(client, b, key)
        result = await ticket_result(client, key, timeout=60)
        assert procs[1].poll() is None and "draining" not in logs[1].read_text()
        assert json.loads(a.ready_path.read_text())["trigger"] == "stop requested (signal)"
        # b's start did not clear a's ready file, and b has none: the files are each replica's own.
        assert not b.ready_path.exists() and not b.shutdown_flag_path.exists()

        # b's own flag drains b alone; a's ready file stays as a wrote it.
        b.shutdown_flag_path.write_text("true\n")
        await wait_for(lambda: asyncio.to_thread(b.ready_path.exists), timeout=30)
        assert await asyncio.to_thread(procs[1].wait, 30) == 0, logs[1].read_text()[-2000:]
        assert json.loads(b.ready_path.read_text())["trigger"] == "shutdown flag file"
        assert json.loads(a.ready_path.read_text())["trigger"] == "stop requested (signal)"
    finally:
        for proc in procs:
            stop(proc)

    assert result.state == JobState.SUCCEEDED and result.attempt == 1
    (launch,) = await agent_launches(client, [ticket_job_id("jira", key)])
    assert launch.attempt == 1 and launch.host_task_queue == b.host_task_queue  # b launched the agent
    assert not a.jobs_dir.exists() or not any(a.jobs_dir.iterdir())  # the job never touched a's disk
    for replica in replicas:
        assert not (replica.state_dir / "token-secret").exists()


@pytest.mark.timeout(120)
async def test_a_job_whose_launching_replica_died_is_relaunched_by_the_other(
    client, settings, tmp_path, monkeypatch
):
    install_fake_codex(tmp_path / "bin", SLOW_CODEX, monkeypatch)
    policy = JobPolicy(retry_window_seconds=0, launching_host_timeout_seconds=HOST_TIMEOUT_SECONDS)
    settings = settings.model_copy(update={"ticket_policy": policy})
    common = {
        "CONDUCTOR_CODING_AGENT": "codex",
        "CONDUCTOR_HEARTBEAT_INTERVAL_SECONDS": "1",
        "CONDUCTOR_TICKET_POLICY__LAUNCHING_HOST_TIMEOUT_SECONDS": str(HOST_TIMEOUT_SECONDS),
    }
    names = ["replica-a", "replica-b"]
    queues = {settings.model_copy(update={"replica_id": n}).host_task_queue: i for i, n in enumerate(names)}
    logs = [tmp_path / f"{name}.log" for name in names]
    procs = [
        conductor_process(settings, free_port(), log, {**common, "CONDUCTOR_REPLICA_ID": name})
        for name, log in zip(names, logs, strict=True)
    ]
    key = fresh_key()
    job_id = ticket_job_id("jira", key)
    orphan = None
    try:
        for log in logs:
            await wait_for(lambda log=log: logged(log, "conductor serving"), timeout=30)
        await start_ticket(client, settings, key)
        launched = await wait_for(lambda: launch_of(client, job_id, 1), timeout=60)
        orphan = int(launched.agent_id.removeprefix("local:"))
        holder = queues[launched.host_task_queue]
        os.killpg(procs[holder].pid, signal.SIGKILL)  # the replica, not restarted
        procs[holder].wait()
        killed_at = time.monotonic()
        result = await ticket_result(client, key, timeout=90)
        relaunched_after = time.monotonic() - killed_at
        status = await client.get_workflow_handle(job_id).query("status", result_type=JobStatus)
    finally:
        for proc in procs:
            stop(proc)
        # A real replica's agents die with its host; here the agent outlived its killed conductor.
        if orphan is not None and is_running(orphan):
            os.killpg(orphan, signal.SIGKILL)
    print(f"\nlaunching replica killed; job done on the other after {relaunched_after:.1f} s")

    assert result.state == JobState.SUCCEEDED
    assert result.attempt == 2, "the dead replica's agent was not given up"
    assert [x.attempt for x in await agent_launches(client, [job_id])] == [1, 2]
    second = await launch_of(client, job_id, 2)
    assert queues[second.host_task_queue] == 1 - holder
    lost = [line for line in status.history if "CRASHED attempt 1" in line]
    assert lost and f"within {HOST_TIMEOUT_SECONDS}s" in lost[0], status.history
    assert any("launching conductor gone" in line for line in status.history), status.history
    assert "launched agent" in logs[1 - holder].read_text()
