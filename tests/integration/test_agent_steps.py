"""The per-job agent runs its task as a step DAG: built-ins plus `steps.json`, states in its heartbeats to
Temporal, every line in the log store, and a failing step that becomes the job's FAILED result.

The agent works in a real job (tests/agent_job_harness.py): what it reported is read from Temporal, the
accepted result from the await activity's completion, the step states from the await activity's heartbeat
details while it runs and from the job's last `progress` signal after its result."""

import asyncio
import signal
from collections.abc import AsyncIterator

import pytest

from conductor_worker.config import Settings
from conductor_worker.gateway.local_log_store import LocalLogStore
from conductor_worker.gateway.server import start_gateway
from contracts.jobs import AgentStatus, FailureClass
from tests.agent_helpers import stage_job, start_agent
from tests.agent_job_harness import AgentJobs, agent_jobs
from tests.helpers import free_port, is_running, wait_for
from tests.job_history import accepted_result, live_agent_beat, relayed_steps

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
async def jobs(client, settings: Settings) -> AsyncIterator[AgentJobs]:
    settings = settings.model_copy(update={"gateway_listen": f"127.0.0.1:{free_port()}"})
    async with agent_jobs(client, settings) as jobs:
        yield jobs


async def test_extra_steps_run_in_the_clone_after_the_coding_agent_and_gate_the_bundle(
    jobs, sample_remote, tmp_path
):
    settings = jobs.settings
    steps = [
        {"name": "lint", "run": "test -f README.md && echo lint ok", "needs": ["clone"]},
        {"name": "check", "run": "grep -c LOG- CHANGELOG.md; echo to stderr >&2"},
    ]
    job_id, token = stage_job(settings, sample_remote, steps)

    assert await jobs.run_agent(job_id, token, tmp_path / "work") == 0

    assert (await accepted_result(jobs.client, job_id)).status is AgentStatus.SUCCEEDED
    steps = await relayed_steps(jobs.client, job_id)
    assert steps == dict.fromkeys(["clone", "code", "lint", "check", "bundle"], "SUCCEEDED")
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


async def test_a_failing_step_fails_the_job_and_skips_the_bundle(jobs, sample_remote, tmp_path):
    steps = [{"name": "test", "run": "echo 2 tests failed >&2; exit 2"}]
    job_id, token = stage_job(jobs.settings, sample_remote, steps)

    assert await jobs.run_agent(job_id, token, tmp_path / "work") == 0  # a FAILED result is still reported

    result = await accepted_result(jobs.client, job_id)
    assert (result.status, result.failure_class, result.exit_code) == (
        AgentStatus.FAILED,
        FailureClass.SCRIPT,
        2,
    )
    assert result.summary == "step 'test' failed (exit code 2): 2 tests failed"
    assert not result.bundle_key
    assert await relayed_steps(jobs.client, job_id) == {
        "clone": "SUCCEEDED",
        "code": "SUCCEEDED",
        "test": "FAILED",
        "bundle": "SKIPPED",
    }


async def test_an_unreachable_remote_is_a_network_failure_of_the_clone_step(jobs, tmp_path):
    job_id, token = stage_job(jobs.settings, tmp_path / "no-such-remote.git")

    assert await jobs.run_agent(job_id, token, tmp_path / "work") == 0

    result = await accepted_result(jobs.client, job_id)
    assert (result.status, result.failure_class) == (AgentStatus.FAILED, FailureClass.NETWORK)
    assert result.summary.startswith("step 'clone' failed (exit code 69): git clone failed (128)")


async def test_sigterm_stops_the_running_steps_and_reports_the_cancel(jobs, sample_remote, tmp_path):
    pid_file = tmp_path / "sleeper.pid"
    settings = jobs.settings
    job_id, token = stage_job(
        settings, sample_remote, [{"name": "slow", "run": f"sleep 60 & echo $! > {pid_file}; wait"}]
    )
    await jobs.start(job_id)
    gateway, _ = await start_gateway(settings, jobs.client)
    try:
        agent = await start_agent(settings.gateway_listen, token, tmp_path / "work")

        async def slow_running() -> bool:
            beat = await live_agent_beat(jobs.client, job_id)  # the await activity's heartbeat details
            return beat is not None and beat["steps"].get("slow") == "RUNNING" and pid_file.exists()

        await wait_for(slow_running, timeout=60)
        agent.send_signal(signal.SIGTERM)  # what the launcher's stop_agent sends first
        code = await asyncio.wait_for(agent.wait(), timeout=30)
    finally:
        await gateway.stop(grace=None)

    assert code == 0
    assert (await accepted_result(jobs.client, job_id)).summary == "the task was cancelled"
    assert await relayed_steps(jobs.client, job_id) == {
        "clone": "SUCCEEDED",
        "code": "SUCCEEDED",
        "slow": "CANCELLED",
        "bundle": "CANCELLED",
    }
    sleeper = int(pid_file.read_text())
    assert not is_running(sleeper), "a step outlived its agent"
