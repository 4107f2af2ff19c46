"""Every process of a job ends with its job: after failure, cancel, timeout, relaunch and a conductor
restart nothing is left.

The stand-in coding agent starts a `&` child and a `setsid` grandchild (another session, reparented),
all carrying an environment marker; the check reads /proc/*/environ, never process names.
"""

import asyncio
import os
import signal
import uuid
from pathlib import Path

import pytest

from contracts.ids import safe_name, ticket_job_id
from contracts.jobs import JobState
from contracts.operator import CancelRequest
from contracts.policies import JobPolicy
from tests.helpers import free_port, fresh_key, install_fake_codex, wait_for
from tests.integration.test_agent_relaunch import start_ticket
from tests.job_history import agent_launches
from tests.scale_helpers import conductor_process
from workflows.agent_job import AgentJobWorkflow

MARKER_VAR = "SANDBOX_TEST_MARKER"

# __MODE__: `fail` exits 3 at once; `work` works for a long time (on attempt 1 only: a relaunched
# attempt 2 finishes at once, so the relaunch test's job ends).
LINGERING_CODEX = """#!/bin/sh
export SANDBOX_TEST_MARKER=__MARKER__
sleep 300 >/dev/null 2>&1 &
( setsid sleep 300 >/dev/null 2>&1 & )
case "$HOME" in
  */attempt-1/*) ;;
  *) echo "relaunched" > relaunched.txt; exit 0 ;;
esac
[ __MODE__ = fail ] && { echo "stand-in codex: failing on purpose"; exit 3; }
echo "stand-in codex: working"
sleep 300
"""


def marked_pids(marker: str) -> set[int]:
    """Live processes whose environment holds the marker."""
    needle = f"{MARKER_VAR}={marker}".encode()
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if needle in environ.split(b"\0") and state != "Z":
            found.add(int(entry))
    return found


def background(marker: str) -> set[int]:
    """The stand-in's `&` child and `setsid` grandchild (the marked `sleep 300`s), to see them live on."""
    found = set()
    for pid in marked_pids(marker):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes() == b"sleep\x00300\x00":
                found.add(pid)
        except FileNotFoundError:
            continue
    return found


async def until(predicate, timeout: float) -> None:
    async def probe():
        return predicate()

    await wait_for(probe, timeout=timeout, interval=0.1)


def job_dir(settings, key: str) -> Path:
    return settings.jobs_dir / safe_name(ticket_job_id("jira", key))


async def job_state(client, key: str) -> JobState:
    status = await client.get_workflow_handle(ticket_job_id("jira", key)).query(AgentJobWorkflow.status)
    return status.state


async def start_lingering_job(client, settings, start_conductor, tmp_path, monkeypatch, mode: str):
    marker = uuid.uuid4().hex
    script = LINGERING_CODEX.replace("__MARKER__", marker).replace("__MODE__", mode)
    install_fake_codex(tmp_path / "bin", script, monkeypatch)
    await start_conductor(settings)
    key = fresh_key()
    await start_ticket(client, settings, key)
    return key, marker


async def ends_in(client, key: str, states: set[JobState], timeout: float = 60) -> JobState:
    async def ended():
        try:
            state = await job_state(client, key)
        except Exception:  # not started yet
            return None
        return state if state in states else None

    return await wait_for(ended, timeout=timeout)


@pytest.fixture
def codex_settings(settings):
    return settings.model_copy(update={"coding_agent": "codex"})


@pytest.mark.timeout(60)
async def test_a_failed_job_leaves_no_process(client, codex_settings, start_conductor, tmp_path, monkeypatch):
    key, marker = await start_lingering_job(
        client, codex_settings, start_conductor, tmp_path, monkeypatch, "fail"
    )
    assert await ends_in(client, key, {JobState.FAILED}) == JobState.FAILED
    await until(lambda: not marked_pids(marker), timeout=10)


@pytest.mark.timeout(60)
async def test_unsandboxed_a_failed_job_leaves_its_setsid_and_background_children(
    client, codex_settings, start_conductor, tmp_path, monkeypatch
):
    """The check above can fail: without the sandbox, the coding agent's children outlive the job."""
    settings = codex_settings.model_copy(update={"sandbox": "unsafe"})
    key, marker = await start_lingering_job(client, settings, start_conductor, tmp_path, monkeypatch, "fail")
    assert await ends_in(client, key, {JobState.FAILED}) == JobState.FAILED
    await asyncio.sleep(2)
    left = marked_pids(marker)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert len(left) == 2, f"expected the & child and the setsid grandchild, found {left}"


@pytest.mark.timeout(60)
async def test_a_cancelled_job_leaves_no_process(
    client, codex_settings, start_conductor, tmp_path, monkeypatch
):
    key, marker = await start_lingering_job(
        client, codex_settings, start_conductor, tmp_path, monkeypatch, "work"
    )
    await until(lambda: len(marked_pids(marker)) >= 3, timeout=30)  # codex, its & child, its grandchild
    await client.get_workflow_handle(ticket_job_id("jira", key)).signal(
        AgentJobWorkflow.cancel, CancelRequest(by="test", reason="processes must end")
    )
    assert await ends_in(client, key, {JobState.CANCELLED}) == JobState.CANCELLED
    await until(lambda: not marked_pids(marker), timeout=10)


@pytest.mark.timeout(60)
async def test_a_timed_out_job_leaves_no_process(
    client, codex_settings, start_conductor, tmp_path, monkeypatch
):
    settings = codex_settings.model_copy(
        update={"ticket_policy": JobPolicy(agent_timeout_seconds=6, retry_window_seconds=0)}
    )
    key, marker = await start_lingering_job(client, settings, start_conductor, tmp_path, monkeypatch, "work")
    await until(lambda: len(marked_pids(marker)) >= 3, timeout=30)
    assert await ends_in(client, key, {JobState.TIMED_OUT}) == JobState.TIMED_OUT
    await until(lambda: not marked_pids(marker), timeout=10)


@pytest.mark.timeout(90)
async def test_a_relaunched_attempt_never_runs_beside_its_predecessor(
    client, codex_settings, start_conductor, tmp_path, monkeypatch
):
    key, marker = await start_lingering_job(
        client, codex_settings, start_conductor, tmp_path, monkeypatch, "work"
    )
    await until(lambda: len(marked_pids(marker)) >= 3, timeout=30)
    first_attempt = marked_pids(marker)
    (first,) = await agent_launches(client, [ticket_job_id("jira", key)])
    os.kill(int(first.agent_id.removeprefix("local:")), signal.SIGKILL)  # the agent's sandbox dies

    # The local launcher writes its record of attempt 2 as it starts that agent: the earliest moment to
    # look for attempt 1's processes (test plumbing; the outcomes are read from Temporal).
    second = job_dir(codex_settings, key) / "attempt-2" / "agent.json"
    await until(second.exists, timeout=30)
    assert not first_attempt & marked_pids(marker), "attempt 1's processes run beside attempt 2"
    assert await ends_in(client, key, {JobState.SUCCEEDED}) == JobState.SUCCEEDED
    await until(lambda: not marked_pids(marker), timeout=10)


# Works until the test drops `release` beside it (its directory is bound read-only into the sandbox).
GATED_CODEX = """#!/bin/sh
export SANDBOX_TEST_MARKER=__MARKER__
sleep 300 >/dev/null 2>&1 &
( setsid sleep 300 >/dev/null 2>&1 & )
while [ ! -e "$(dirname "$0")/release" ]; do sleep 0.2; done
echo "changed by the stand-in coding agent" > codex-change.txt
"""


@pytest.mark.timeout(150)
async def test_an_agent_outlives_its_conductor_and_ends_with_its_job_under_the_next(
    client, codex_settings, start_conductor, tmp_path, monkeypatch
):
    marker = uuid.uuid4().hex
    install_fake_codex(tmp_path / "bin", GATED_CODEX.replace("__MARKER__", marker), monkeypatch)
    port = free_port()
    settings = codex_settings.model_copy(update={"gateway_listen": f"127.0.0.1:{port}"})
    first = conductor_process(settings, port, tmp_path / "first.log", {"CONDUCTOR_CODING_AGENT": "codex"})
    try:
        key = fresh_key()
        await start_ticket(client, settings, key)
        await until(lambda: len(background(marker)) == 2, timeout=60)
        running = background(marker)
        os.killpg(first.pid, signal.SIGKILL)  # the conductor that launched the agent, mid-job
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    await asyncio.sleep(1)
    assert background(marker) == running, "the job's processes died with the conductor"

    await start_conductor(settings)  # the next conductor, on the same gateway address
    (tmp_path / "bin" / "release").touch()
    assert await ends_in(client, key, {JobState.SUCCEEDED}, timeout=120) == JobState.SUCCEEDED
    await until(lambda: not marked_pids(marker), timeout=10)
    launches = await agent_launches(client, [ticket_job_id("jira", key)])
    assert [x.attempt for x in launches] == [1], "the agent was relaunched, not adopted"
