"""The agent without its gateway: every log line arrives once and in order after a 30 s outage, the
result is reported when the gateway is back, and kept on disk (exit 75) when it never comes back.

Real parts: the gateway on loopback gRPC in this process, `conductor-agent` as a subprocess, git, and the
agent's job on the Temporal dev server (tests/agent_job_harness.py), from which what the agent reported is
read: its step states from the await activity's heartbeat details, its accepted result from history.
"""

import asyncio
import shlex
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent_runtime.job import EXIT_RESULT_KEPT
from conductor_worker.config import Settings
from conductor_worker.gateway.local_log_store import LocalLogStore
from conductor_worker.gateway.server import start_gateway
from contracts.jobs import AgentResult, AgentStatus
from tests.agent_helpers import stage_job, start_agent
from tests.agent_job_harness import AgentJobs, agent_jobs
from tests.helpers import free_port, wait_for
from tests.job_history import accepted_result, accepted_results, live_agent_beat, relayed_steps

LINES = 100_000
OUTAGE_SECONDS = 30


@pytest.fixture
async def jobs(client, settings: Settings) -> AsyncIterator[AgentJobs]:
    settings = settings.model_copy(update={"gateway_listen": f"127.0.0.1:{free_port()}"})
    # The agent stays silent to Temporal through the outage without its attempt being lost.
    async with agent_jobs(client, settings, heartbeat_timeout_seconds=OUTAGE_SECONDS * 4) as jobs:
        yield jobs


def wait_then(go: Path, command: str) -> str:
    """A shell step that blocks until the test creates `go`, then runs `command`."""
    return f"while [ ! -e {shlex.quote(str(go))} ]; do sleep 0.05; done; {command}"


def spew(first: int, last: int) -> str:
    code = f"for i in range({first}, {last + 1}): print(f'spew {{i:06d}}')"
    return f"{shlex.quote(sys.executable)} -c {shlex.quote(code)}"


async def spew_started(store: LocalLogStore, job_id: str) -> bool:
    return any(line.step == "spew" for line in store.tail(job_id, 50))


@pytest.mark.timeout(180)
async def test_a_30s_gateway_outage_loses_no_line_and_the_result_is_reported_after_it(
    jobs, sample_remote, tmp_path
):
    settings = jobs.settings
    go = tmp_path / "go"
    half = LINES // 2
    steps = [{"name": "spew", "run": f"{spew(1, half)}; {wait_then(go, spew(half + 1, LINES))}"}]
    job_id, token = stage_job(settings, sample_remote, steps)
    store = LocalLogStore(settings.logs_path)
    await jobs.start(job_id)
    gateway, _ = await start_gateway(settings, jobs.client)
    # 1 MiB of memory for unsent lines: most of the 100,000 wait in the spill file during the outage.
    agent = await start_agent(
        settings.gateway_listen, token, tmp_path / "work", "--log-memory-bytes", str(1 << 20)
    )

    await wait_for(lambda: spew_started(store, job_id), timeout=60)
    await gateway.stop(grace=None)
    down_at = time.monotonic()
    go.touch()  # the second half is printed, and the job finishes, with no gateway
    await asyncio.sleep(OUTAGE_SECONDS)
    assert agent.returncode is None, "the agent gave up while the gateway was away"
    gateway, _ = await start_gateway(settings, jobs.client)
    try:
        code = await asyncio.wait_for(agent.wait(), timeout=90)
        back_after = time.monotonic() - down_at
    finally:
        await gateway.stop(grace=None)

    assert code == 0, (tmp_path / "work" / "agent.err").read_text()[-3000:]
    stored = store.read(job_id, 1)
    assert [line.seq for line in stored] == list(range(1, len(stored) + 1)), "a gap or a duplicate"
    assert [line.text for line in stored if line.step == "spew"] == [
        f"spew {i:06d}" for i in range(1, LINES + 1)
    ]
    assert store.is_complete(job_id, 1)
    assert stored[-1].text == "conductor-agent: exiting with code 0"
    result = await accepted_result(jobs.client, job_id)
    assert result.status is AgentStatus.SUCCEEDED and result.bundle_key
    steps = await relayed_steps(jobs.client, job_id)
    assert steps == dict.fromkeys(["clone", "code", "spew", "bundle"], "SUCCEEDED")
    print(f"{len(stored)} lines stored once, in order; agent done {back_after:.1f}s after the outage began")


@pytest.mark.timeout(60)
async def test_a_gateway_that_never_comes_back_leaves_the_result_on_disk_and_exit_75(
    jobs, sample_remote, tmp_path
):
    settings = jobs.settings
    go = tmp_path / "go"
    job_id, token = stage_job(settings, sample_remote, [{"name": "wait", "run": wait_then(go, "echo done")}])
    store = LocalLogStore(settings.logs_path)
    await jobs.start(job_id)
    gateway, _ = await start_gateway(settings, jobs.client)
    workdir = tmp_path / "work"
    agent = await start_agent(settings.gateway_listen, token, workdir, "--report-timeout", "3")

    async def waiting() -> bool:
        beat = await live_agent_beat(jobs.client, job_id)  # the await activity's heartbeat details
        return beat is not None and beat["steps"].get("wait") == "RUNNING"

    await wait_for(waiting, timeout=60)
    await gateway.stop(grace=None)
    go.touch()
    started = time.monotonic()
    code = await asyncio.wait_for(agent.wait(), timeout=40)
    waited = time.monotonic() - started

    stderr = (workdir / "agent.err").read_text()
    last = stderr.strip().splitlines()[-1]
    job_dir = workdir / f"job_ticket_jira_{job_id.rsplit('/', 1)[1]}-1"
    assert code == EXIT_RESULT_KEPT, stderr[-3000:]
    assert last.startswith(f"conductor-agent: could not report the result to {settings.gateway_listen}")
    assert f"the result is kept in {job_dir / 'result.json'} (bundle {job_dir / 'work.bundle'})" in last
    assert f"kept in {job_dir / 'unsent-log.jsonl'}" in last
    kept = AgentResult.model_validate_json((job_dir / "result.json").read_text())
    assert kept.status is AgentStatus.SUCCEEDED and (job_dir / "work.bundle").stat().st_size > 0
    assert "conductor-agent: exiting with code 75" in (job_dir / "unsent-log.jsonl").read_text()
    assert not store.is_complete(job_id, 1)
    assert (await accepted_results(jobs.client, [job_id]))[job_id] == []  # no gateway heard the result
    assert waited < 20, f"the bounded wait took {waited:.1f}s"
