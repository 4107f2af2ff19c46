"""What the local launcher really hands a live agent process, and that stopping it leaves nothing."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from temporalio.testing import ActivityEnvironment

from conductor_worker.process.worker import build_launcher
from contracts.activity_io import LaunchAgentInput, StopAgentInput
from stores.job_store import JobAttemptDir

CREDENTIALS = {
    "GITHUB_TOKEN": "ghp_x",
    "CONDUCTOR_GITHUB_TOKEN": "ghp_x",
    "AWS_ACCESS_KEY_ID": "AKIA",
    "AWS_SECRET_ACCESS_KEY": "x",
    "TEMPORAL_ADDRESS": "t:7233",
}


def process_environment(pid: int) -> dict[str, str]:
    """The process's environment. Read right after its launch it can be empty (CI, stop 21): the kernel sets
    a new program's arguments and environment after the exec closed the pipe Popen returns on."""
    deadline = time.monotonic() + 10
    while not (raw := Path(f"/proc/{pid}/environ").read_bytes()) and time.monotonic() < deadline:
        time.sleep(0.01)
    return dict(item.decode().split("=", 1) for item in raw.split(b"\0") if b"=" in item)


async def test_live_agent_environment_holds_no_credentials(settings, monkeypatch):
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    launcher = build_launcher(settings)
    env = ActivityEnvironment()
    launched = await env.run(launcher.launch_agent, LaunchAgentInput(job_id="job/t/ENG-1", attempt=1))
    pid = int(launched.agent_id.removeprefix("local:"))
    try:
        seen = process_environment(pid)
        assert not set(CREDENTIALS) & set(seen)
        assert "ghp_x" not in seen.values() and settings.temporal_address not in seen.values()
        assert seen["CONDUCTOR_AGENT_GATEWAY"] == settings.agent_gateway_address
        assert set(seen) - {"PATH", "LANG", "LC_ALL", "TZ", "HOME"} == {
            "CONDUCTOR_AGENT_GATEWAY",
            "CONDUCTOR_AGENT_TOKEN",
            "CONDUCTOR_AGENT_WORKDIR",
            "CONDUCTOR_AGENT_CODING_AGENT",
            "CONDUCTOR_AGENT_CODING_AGENT_TIMEOUT",
            "CONDUCTOR_AGENT_LOG_SPILL_BYTES",
        }
        # A retried launch of the same attempt finds the live agent instead of starting another.
        again = await env.run(launcher.launch_agent, LaunchAgentInput(job_id="job/t/ENG-1", attempt=1))
        assert again.agent_id == launched.agent_id
    finally:
        await env.run(
            launcher.stop_agent, StopAgentInput(job_id="job/t/ENG-1", attempt=1, agent_id=launched.agent_id)
        )
    assert not launcher.is_alive(launched.agent_id)
    assert not os.path.exists(f"/proc/{pid}")


async def test_a_retried_launch_returns_another_replicas_agent_with_that_replicas_queue(settings, tmp_path):
    """On a shared state dir, a launch retried on another replica must not judge (or start beside) an
    agent it cannot see: it hands back the launching replica's queue, where the watch finds out."""
    mine = settings.model_copy(update={"replica_id": "replica-b"})
    theirs = settings.model_copy(update={"replica_id": "replica-a"}).host_task_queue
    record = JobAttemptDir(mine.jobs_dir, "job-x", 1).root / "agent.json"
    record.parent.mkdir(parents=True)
    # A pid that is not an agent here: the old code judged it dead on this host and launched a second one.
    record.write_text(json.dumps({"agent_id": "local:1", "host_task_queue": theirs}))
    launcher = build_launcher(mine)
    launched = await ActivityEnvironment().run(
        launcher.launch_agent, LaunchAgentInput(job_id="job-x", attempt=1)
    )
    assert (launched.agent_id, launched.host_task_queue) == ("local:1", theirs)
    assert not list(record.parent.glob("workdir-*"))  # nothing was spawned


async def test_a_launch_retried_after_a_death_before_the_record_adopts_the_agent_it_spawned(settings):
    """CI, stop 20: a conductor SIGKILLed between spawning an agent and writing agent.json; the retried launch
    started a second agent for the same attempt, whose bundle replaced the reported one (InvalidBundle)."""
    job = LaunchAgentInput(job_id="job/t/ENG-2", attempt=1)
    env = ActivityEnvironment()
    launched = await env.run(build_launcher(settings).launch_agent, job)
    record = JobAttemptDir(settings.jobs_dir, job.job_id, job.attempt).root / "agent.json"
    try:
        record.unlink()  # as if the conductor had died right after spawning
        # A new conductor process: it holds no children of the dead one.
        again = await env.run(build_launcher(settings).launch_agent, job)
        assert again.agent_id == launched.agent_id
        assert len(list(record.parent.glob("workdir-*"))) == 1  # nothing else was spawned
        assert json.loads(record.read_text())["agent_id"] == launched.agent_id
    finally:
        await env.run(
            build_launcher(settings).stop_agent,
            StopAgentInput(job_id=job.job_id, attempt=job.attempt, agent_id=launched.agent_id),
        )
    pid = int(launched.agent_id.removeprefix("local:"))
    assert not os.path.exists(f"/proc/{pid}") or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]


async def test_a_stop_kills_what_runs_on_in_the_attempts_work_directory(settings):
    """CI, stop 21: stopped right after its launch, a sandbox outlived its holder (bwrap's child ties itself
    to its parent only after the clone) and ran on. Here such an orphan is a process of the attempt's own
    work directory that the recorded agent's signals do not reach (its own session)."""
    job = LaunchAgentInput(job_id="job/t/ENG-3", attempt=1)
    env = ActivityEnvironment()
    launcher = build_launcher(settings)
    launched = await env.run(launcher.launch_agent, job)
    (workdir,) = JobAttemptDir(settings.jobs_dir, job.job_id, job.attempt).root.glob("workdir-*")
    orphan = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)", "agent_runtime"],
        cwd=workdir,
        start_new_session=True,
    )
    try:
        await env.run(
            launcher.stop_agent,
            StopAgentInput(job_id=job.job_id, attempt=job.attempt, agent_id=launched.agent_id),
        )
        assert orphan.wait(timeout=10) == -9  # SIGKILL
    finally:
        orphan.kill()
