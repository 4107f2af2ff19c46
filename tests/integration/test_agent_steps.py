"""The per-job agent runs its task as a step DAG: built-ins plus `steps.json`, states in the heartbeat
record, every line in the log store, and a failing step that becomes the job's FAILED result."""

import asyncio
import signal
from pathlib import Path

import pytest

from conductor_worker.config import Settings
from conductor_worker.gateway.log_store import LocalLogStore
from conductor_worker.gateway.server import start_gateway
from contracts.jobs import AgentStatus, FailureClass
from stores.job_store import JobAttemptDir
from tests.agent_helpers import stage_job, start_agent
from tests.helpers import free_port, is_running, wait_for

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        state_dir=tmp_path / "state", gateway_listen=f"127.0.0.1:{free_port()}", heartbeat_interval_seconds=1
    )


async def run_agent(settings: Settings, token: str, workdir: Path) -> int:
    gateway, _ = await start_gateway(settings)
    try:
        agent = await start_agent(settings.gateway_listen, token, workdir)
        return await agent.wait()
    finally:
        await gateway.stop(grace=None)


async def test_extra_steps_run_in_the_clone_after_the_coding_agent_and_gate_the_bundle(
    settings, sample_remote, tmp_path
):
    steps = [
        {"name": "lint", "run": "test -f README.md && echo lint ok", "needs": ["clone"]},
        {"name": "check", "run": "grep -c LOG- CHANGELOG.md; echo to stderr >&2"},
    ]
    job_id, token = stage_job(settings, sample_remote, steps)

    assert await run_agent(settings, token, tmp_path / "work") == 0

    job = JobAttemptDir(settings.jobs_dir, job_id, 1)
    assert job.result().status is AgentStatus.SUCCEEDED
    assert job.step_states() == dict.fromkeys(["clone", "code", "lint", "check", "bundle"], "SUCCEEDED")
    lines = LocalLogStore(settings.logs_path).read(job_id, 1)
    said = [(line.step, line.stream, line.text) for line in lines if line.step in ("lint", "check")]
    # `check` ran after the demo agent wrote its changelog line: it found it.
    assert sorted(said) == [
        ("check", "stderr", "to stderr"),
        ("check", "stdout", "1"),
        ("lint", "stdout", "lint ok"),
    ]
    order = [line.step for line in lines if line.step]
    assert order.index("check") > max(i for i, step in enumerate(order) if step == "code")
    assert order[-1] == "bundle"


async def test_a_failing_step_fails_the_job_and_skips_the_bundle(settings, sample_remote, tmp_path):
    steps = [{"name": "test", "run": "echo 2 tests failed >&2; exit 2"}]
    job_id, token = stage_job(settings, sample_remote, steps)

    assert await run_agent(settings, token, tmp_path / "work") == 0  # a FAILED result is still reported

    job = JobAttemptDir(settings.jobs_dir, job_id, 1)
    result = job.result()
    assert (result.status, result.failure_class, result.exit_code) == (
        AgentStatus.FAILED,
        FailureClass.SCRIPT,
        2,
    )
    assert result.summary == "step 'test' failed (exit code 2): 2 tests failed"
    assert not result.bundle_key
    assert job.step_states() == {
        "clone": "SUCCEEDED",
        "code": "SUCCEEDED",
        "test": "FAILED",
        "bundle": "SKIPPED",
    }


async def test_an_unreachable_remote_is_a_network_failure_of_the_clone_step(settings, tmp_path):
    job_id, token = stage_job(settings, tmp_path / "no-such-remote.git")

    assert await run_agent(settings, token, tmp_path / "work") == 0

    result = JobAttemptDir(settings.jobs_dir, job_id, 1).result()
    assert (result.status, result.failure_class) == (AgentStatus.FAILED, FailureClass.NETWORK)
    assert result.summary.startswith("step 'clone' failed (exit code 69): git clone failed (128)")


async def test_sigterm_stops_the_running_steps_and_reports_the_cancel(settings, sample_remote, tmp_path):
    pid_file = tmp_path / "sleeper.pid"
    job_id, token = stage_job(
        settings, sample_remote, [{"name": "slow", "run": f"sleep 60 & echo $! > {pid_file}; wait"}]
    )
    gateway, _ = await start_gateway(settings)
    try:
        agent = await start_agent(settings.gateway_listen, token, tmp_path / "work")
        job = JobAttemptDir(settings.jobs_dir, job_id, 1)

        async def slow_running() -> bool:
            return job.step_states().get("slow") == "RUNNING" and pid_file.exists()

        await wait_for(slow_running, timeout=60)
        agent.send_signal(signal.SIGTERM)  # what the launcher's stop_agent sends first
        code = await asyncio.wait_for(agent.wait(), timeout=30)
    finally:
        await gateway.stop(grace=None)

    assert code == 0
    assert job.result().summary == "the task was cancelled"
    assert job.step_states() == {
        "clone": "SUCCEEDED",
        "code": "SUCCEEDED",
        "slow": "CANCELLED",
        "bundle": "CANCELLED",
    }
    sleeper = int(pid_file.read_text())
    assert not is_running(sleeper), "a step outlived its agent"
