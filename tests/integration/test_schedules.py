"""Scheduled agent jobs: `conductor schedule create|list|pause|unpause|delete` against the dev server, and
`temporal schedule trigger` starting a job that publishes a branch of its own."""

import asyncio
import os
import sys
import uuid
from pathlib import Path

from temporalio.client import WorkflowExecutionStatus

from conductor_worker.process.devserver import temporal_executable
from contracts.jobs import JobResult, JobState
from contracts.schedules import schedule_id
from tests.git_helpers import git
from tests.helpers import wait_for


async def run(*args: str, env: dict[str, str]) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *args, env={**os.environ, **env}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode, out.decode()


def conductor_env(settings) -> dict[str, str]:
    return {
        "CONDUCTOR_TEMPORAL_ADDRESS": settings.temporal_address,
        "CONDUCTOR_TASK_QUEUE": settings.task_queue,
        "CONDUCTOR_ROUTES_FILE": str(settings.routes_file),
    }


async def schedule(settings, *args: str) -> tuple[int, str]:
    return await run(sys.executable, "-m", "conductor_worker", "schedule", *args, env=conductor_env(settings))


async def test_a_triggered_schedule_runs_a_job_that_publishes_its_branch(
    client, settings, start_conductor, sample_remote, tmp_path: Path
):
    name = f"deps-{uuid.uuid4().hex[:6]}"
    prompt = tmp_path / "prompt.md"
    prompt.write_text("Bump the dependencies that have a newer patch release.\n")
    code, out = await schedule(
        settings,
        "create",
        name,
        "--cron",
        "0 6 * * MON",
        "--route",
        "examples/greeter",
        "--prompt-file",
        str(prompt),
        "--summary",
        "Weekly dependency updates",
    )
    assert code == 0, out
    code, out = await schedule(settings, "list")
    assert code == 0, out
    assert f"{name} " in out and "0 6 * * MON (UTC)" in out and "active" in out

    await start_conductor(settings)
    code, out = await run(
        temporal_executable(),
        "schedule",
        "trigger",
        "--address",
        settings.temporal_address,
        "--schedule-id",
        schedule_id(name),
        env={},
    )
    assert code == 0, out

    async def started_run():
        query = f"WorkflowType = 'ScheduledJobWorkflow' AND WorkflowId STARTS_WITH '{schedule_id(name)}-'"
        return [wf async for wf in client.list_workflows(query)]

    (run_wf,) = await wait_for(started_run, timeout=30)
    result = await client.get_workflow_handle(run_wf.id, result_type=JobResult).result()
    assert result.state == JobState.SUCCEEDED
    assert result.job_id.startswith(f"job/schedule/{name}/")
    assert result.branch.startswith(f"conductor/schedule/{name}/")
    assert git("rev-parse", f"refs/heads/{result.branch}", cwd=sample_remote) == result.commit_sha
    job = await client.get_workflow_handle(result.job_id).describe()
    assert job.status == WorkflowExecutionStatus.COMPLETED
    assert job.typed_search_attributes  # searchable like every job: kind and key below
    query = f"ConductorJobKind = 'scheduled' AND WorkflowId = '{result.job_id}'"
    assert await wait_for(lambda: _count(client, query)) == 1

    code, out = await schedule(settings, "pause", name, "--note", "holiday freeze")
    assert code == 0, out
    code, out = await schedule(settings, "list")
    assert "paused" in out and "holiday freeze" in out
    code, out = await schedule(settings, "unpause", name)
    assert code == 0, out
    code, out = await schedule(settings, "delete", name)
    assert code == 0, out
    code, out = await schedule(settings, "list")
    assert name not in out


async def test_refusals_are_one_clear_line(settings, tmp_path: Path):
    prompt = tmp_path / "prompt.md"
    prompt.write_text("Triage the flaky tests.\n")
    create = ("create", "--route", "examples/greeter", "--prompt-file", str(prompt))

    code, out = await schedule(settings, *create, "nightly", "--cron", "not a cron")
    assert code == 1 and "Temporal refused the schedule" in out, out
    code, out = await schedule(
        settings, "create", "nightly", "--cron", "0 3 * * *", "--route", "nope", "--prompt-file", str(prompt)
    )
    assert code == 2 and "no route named 'nope'" in out and "examples/greeter" in out, out
    code, out = await schedule(settings, *create, "Bad_Name", "--cron", "0 3 * * *")
    assert code == 2 and "pattern" in out, out
    code, out = await schedule(settings, "pause", f"absent-{uuid.uuid4().hex[:6]}")
    assert code == 1 and "error: schedule" in out, out
    name = f"twice-{uuid.uuid4().hex[:6]}"
    assert (await schedule(settings, *create, name, "--cron", "0 3 * * *", "--paused"))[0] == 0
    code, out = await schedule(settings, *create, name, "--cron", "0 3 * * *")
    assert code == 1 and "exists" in out, out
    assert (await schedule(settings, "delete", name))[0] == 0


async def _count(client, query: str) -> int:
    return (await client.count_workflows(query)).count
