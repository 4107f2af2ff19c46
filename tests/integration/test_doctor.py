"""A workflow task that keeps failing is never silent: the worker's interceptor logs it once at ERROR and
counts it, and `conductor doctor` names it (and a claim held by a job that has closed)."""

import asyncio
import logging
import os
import sys
import uuid

from temporalio.worker import Worker

from conductor_worker.commands.doctor import diagnose
from conductor_worker.process.task_failures import WorkflowTaskFailures
from contracts.claims import RepoClaimState
from tests.helpers import wait_for
from tests.integration.stuck_workflows import BrokenSignalWorkflow
from workflows.repo_claim import RepoClaimWorkflow


async def run_doctor(address: str, task_queue: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "conductor_worker",
        "doctor",
        env={**os.environ, "CONDUCTOR_TEMPORAL_ADDRESS": address, "CONDUCTOR_TASK_QUEUE": task_queue},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode, out.decode()


async def test_a_failing_workflow_task_is_logged_once_counted_and_named_by_doctor(client, caplog):
    queue = f"doctor-{uuid.uuid4().hex[:8]}"
    failures = WorkflowTaskFailures()
    caplog.set_level(logging.ERROR, logger="conductor_worker.process.task_failures")
    async with Worker(client, task_queue=queue, workflows=[BrokenSignalWorkflow], interceptors=[failures]):
        handle = await client.start_workflow(BrokenSignalWorkflow.run, id=f"broken-{queue}", task_queue=queue)
        await handle.signal(BrokenSignalWorkflow.poke)

        # Temporal retries the failed task; each retry fails the same way.
        async def failed_twice() -> bool:
            return failures.count >= 2

        await wait_for(failed_twice, timeout=30)

        logged = [
            r.getMessage() for r in caplog.records if r.name == "conductor_worker.process.task_failures"
        ]
        assert len(logged) == 1, logged
        assert handle.id in logged[0] and "ValueError: poked a broken workflow" in logged[0]
        assert "signal poke" in logged[0]

        findings = [f for f in await diagnose(client, task_queue=queue) if f.workflow_id == handle.id]
        assert [f.kind for f in findings] == ["task-failing"]
        assert "poked a broken workflow" in findings[0].detail

        code, out = await run_doctor(client.service_client.config.target_host, queue)
        assert code == 1, out
        assert "task-failing" in out and handle.id in out
        await handle.terminate("test done")


async def test_doctor_names_a_claim_held_by_a_closed_job(client):
    queue = f"doctor-{uuid.uuid4().hex[:8]}"
    closed_job = f"closed-job-{queue}"
    async with Worker(client, task_queue=queue, workflows=[BrokenSignalWorkflow, RepoClaimWorkflow]):
        job = await client.start_workflow(BrokenSignalWorkflow.run, id=closed_job, task_queue=queue)
        await job.terminate("the job ended without releasing its claim")
        # The holder check is hours away: the claim keeps the closed holder meanwhile.
        claim = await client.start_workflow(
            RepoClaimWorkflow.run,
            RepoClaimState(repo_url=f"/srv/{queue}.git", holders=[closed_job], holder_check_seconds=3600),
            id=f"repo-claim//srv/{queue}.git",
            task_queue=queue,
        )
        findings = [f for f in await diagnose(client, task_queue=queue) if f.workflow_id == claim.id]
        assert [(f.kind, f.detail) for f in findings] == [
            ("claim-held-by-closed-job", f"holder {closed_job} has closed")
        ]
        await claim.terminate("test done")
