"""Safe shutdown on real parts: 20 jobs running, drain (SIGTERM or the flag file), a new conductor ends them.

Agents run a fake `codex` that works until the test releases it, so all 20 are mid-job when the drain starts.
"""

import asyncio
import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.service import RPCError

from contracts.ids import ticket_job_id
from contracts.jobs import JobState
from tests.git_helpers import git
from tests.helpers import (
    count_workflows,
    free_port,
    queue_depth,
    ticket_body,
    ticket_result,
    use_s3_stores,
    wait_for,
    write_fake_codex,
)
from tests.job_history import accepted_results, agent_launches
from tests.scale_helpers import conductor_process, scale_settings, send_all

JOBS = 20
EXTRA = 3
RELEASE_WAIT_SECONDS = 150
DRAIN_TIMEOUT = 20
# The test leaves a gap with no conductor at all (the first exits, then the second starts), which a rolling
# deploy of replicas does not. An agent silent to Temporal for 3 beats is lost and relaunched, so beats are
# 10 s apart here (30 s of silence allowed, 15 s by default): at load 10-13 the second conductor took 18 s
# to come up after heartbeats had already timed out under the load, and one job was relaunched.
CONDUCTOR_ENV = {"CONDUCTOR_HEARTBEAT_INTERVAL_SECONDS": "10"}

# Stands in for `codex exec`: works until the test drops `release` beside it (its directory is bound
# into the agent's sandbox read-only, so the agent sees the file appear), so every job is still running
# when the drain starts however long 20 launches take on busy cores.
FAKE_CODEX = f"""#!/bin/sh
waited=0
while [ ! -e "$(dirname "$0")/release" ] && [ $waited -lt {RELEASE_WAIT_SECONDS * 2} ]; do
  sleep 0.5; waited=$((waited + 1))
done
echo "changed by the fake codex" > FAKE_CODEX.md
echo "fake codex: wrote FAKE_CODEX.md"
"""


def fake_codex_dir(tmp_path: Path) -> Path:
    return write_fake_codex(tmp_path / "fake-bin", FAKE_CODEX)


def job_ids(keys: list[str]) -> list[str]:
    return [ticket_job_id("jira", key) for key in keys]


async def launched_agents(client, keys: list[str]) -> dict[str, list[tuple[int, str]]]:
    """Each job's agent launches as (attempt, agent id), read from its history in Temporal: a relaunch, of
    the same attempt or a new one, adds a launch."""
    found = {job: [] for job in job_ids(keys)}
    for launch in await agent_launches(client, found):
        found[launch.job_id].append((launch.attempt, launch.agent_id))
    return found


async def retried_after(client, key: str) -> list[str]:
    """The error types the job's activities were retried after (history keeps the last attempt's)."""
    history = await client.get_workflow_handle(ticket_job_id("jira", key)).fetch_history()
    return [
        started.last_failure.application_failure_info.type
        for started in (e.activity_task_started_event_attributes for e in history.events)
        if started.attempt > 1
    ]


async def retries(client, key: str) -> list[str]:
    """Which activities were retried after what, for a failure message."""
    history = await client.get_workflow_handle(ticket_job_id("jira", key)).fetch_history()
    scheduled = {
        e.event_id: e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    }
    return [
        f"{key}: {scheduled.get(e.activity_task_started_event_attributes.scheduled_event_id)} attempt "
        f"{e.activity_task_started_event_attributes.attempt} after "
        f"{e.activity_task_started_event_attributes.last_failure.message!r}"
        for e in history.events
        if e.HasField("activity_task_started_event_attributes")
        and e.activity_task_started_event_attributes.attempt > 1
    ]


def stop(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


@pytest.mark.timeout(300)
# Each trigger on the local stores, and the blob and log stores on S3 (moto) once.
@pytest.mark.parametrize(
    ("trigger", "stores"), [("sigterm", "local"), ("flag_file", "local"), ("sigterm", "s3")]
)
async def test_drain_hands_running_jobs_to_the_next_conductor(
    trigger, stores, client, intake_settings, tmp_path, sample_remote, monkeypatch
):
    settings = scale_settings(intake_settings, tmp_path, sample_remote)
    if stores == "s3":
        settings = use_s3_stores(settings, settings.aws_endpoint_url, monkeypatch)
    # conductor_process passes this process's environment on; the launcher passes PATH on to agents.
    monkeypatch.setenv("PATH", f"{fake_codex_dir(tmp_path)}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("CONDUCTOR_CODING_AGENT", "codex")
    monkeypatch.setenv("CONDUCTOR_DRAIN_TIMEOUT_SECONDS", str(DRAIN_TIMEOUT))
    prefix = f"D{random.randrange(1000, 9999)}"
    keys = [f"{prefix}-{i}" for i in range(1, JOBS + 1)]
    extras = [f"{prefix}-{i}" for i in range(JOBS + 1, JOBS + EXTRA + 1)]
    # The replica's own files (<state dir>/replicas/<replica>/): the test computes the same replica name.
    flag, ready = settings.shutdown_flag_path, settings.ready_path
    flag.parent.mkdir(parents=True, exist_ok=True)
    flag.write_text("false\n")
    port, log = free_port(), tmp_path / "conductor.log"
    first = second = None
    try:
        first = conductor_process(settings, port, log, CONDUCTOR_ENV)
        send_all(settings, [ticket_body(key) for key in keys])
        await wait_for(lambda: _all_watched(client, keys), timeout=120)
        launched = await launched_agents(client, keys)
        finished_before = sum(
            bool(results) for results in (await accepted_results(client, job_ids(keys))).values()
        )

        drain_started = time.monotonic()
        if trigger == "sigterm":
            first.send_signal(signal.SIGTERM)
        else:
            flag.write_text("TRUE\n")
        await wait_for(lambda: _logged(log, "drain: SQS intake stopped"), timeout=10)
        send_all(settings, [ticket_body(key) for key in extras])
        await wait_for(lambda: _exists(ready), timeout=DRAIN_TIMEOUT + 15)
        to_ready = time.monotonic() - drain_started
        assert await asyncio.to_thread(first.wait, 60) == 0, log.read_text()[-3000:]
        report = json.loads(ready.read_text())

        # Intake stopped: the messages sent during the drain wait in the queue, none became a workflow.
        assert queue_depth(settings, settings.sqs_queue_url) == EXTRA
        extra_ids = ", ".join(f"'ticket/jira/{key}'" for key in extras)
        assert await count_workflows(client, f"WorkflowId IN ({extra_ids})") == 0

        if trigger == "flag_file":
            flag.write_text("false\n")  # as the deploy does before it starts the new version
        (tmp_path / "fake-bin" / "release").touch()  # the agents finish while no conductor runs
        restarted = time.monotonic()
        second = conductor_process(settings, port, log, CONDUCTOR_ENV)
        await wait_for(lambda: _gone(ready), timeout=30)
        restart_seconds = time.monotonic() - restarted
        results = await asyncio.gather(*(ticket_result(client, key, timeout=180) for key in keys + extras))
    finally:
        stop(first)
        stop(second)
    total = time.monotonic() - drain_started
    print(
        f"\n[{trigger}] running at drain: {JOBS - finished_before}/{JOBS}; drain to ready file {to_ready:.1f} s; "
        f"second conductor started (ready file gone) after {restart_seconds:.1f} s; drain to all {JOBS + EXTRA} done {total:.1f} s; "
        f"ready file: {json.dumps(report)}"
    )

    assert finished_before < JOBS  # the drain caught jobs mid-run, not after they were done
    assert report["trigger"] == (
        "shutdown flag file" if trigger == "flag_file" else "stop requested (signal)"
    )
    assert to_ready < DRAIN_TIMEOUT + 10
    assert [r.state for r in results] == [JobState.SUCCEEDED] * (JOBS + EXTRA)
    # 0 lost, 0 duplicated: one branch per ticket, one agent launch per job, each job run once.
    branches = git("for-each-ref", "--format=%(refname:short)", "refs/heads/conductor/", cwd=sample_remote)
    ours = [b for b in branches.split() if b.startswith(f"conductor/{prefix}-")]
    assert sorted(ours) == sorted(f"conductor/{key}" for key in keys + extras)
    after = await launched_agents(client, keys + extras)
    for job, agents in after.items():  # one launch per job, of attempt 1, completed
        assert len(agents) == 1 and agents[0][0] == 1 and agents[0][1], (job, agents)
    assert {job: after[job] for job in launched} == launched  # no job was relaunched by the new conductor
    # Nothing was handed over: the agent's await activity is completed through Temporal by whichever
    # gateway hears the agent. It may have been retried only after a heartbeat timeout (no application
    # error type), when no gateway listened for longer than a heartbeat window.
    for key in keys:
        assert set(await retried_after(client, key)) <= {""}, await retries(client, key)
    assert [r.commit_sha for r in results] == [
        git("rev-parse", f"refs/heads/conductor/{key}", cwd=sample_remote) for key in keys + extras
    ]
    assert await wait_for(lambda: _queue_empty(settings), timeout=30)


async def _queue_empty(settings) -> bool:
    return queue_depth(settings, settings.sqs_queue_url) == 0


async def _all_watched(client, keys: list[str]) -> bool:
    """Every job's agent launched and its result watcher running: the jobs are mid-run."""
    for key in keys:
        try:
            described = await client.get_workflow_handle(ticket_job_id("jira", key)).describe()
        except RPCError:
            return False
        if not any(
            a.activity_type.name == "await_agent_result"
            and a.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
            for a in described.raw_description.pending_activities
        ):
            return False
    return True


async def _logged(log: Path, text: str) -> bool:
    return text in log.read_text()


async def _exists(path: Path) -> bool:
    return path.exists()


async def _gone(path: Path) -> bool:
    return not path.exists()
