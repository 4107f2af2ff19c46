"""`conductor doctor`: what is stuck, seen from the Temporal server's side.

- A workflow whose task keeps failing (its pending workflow task's attempt is above 1): it looks
  RUNNING and decides nothing until the code is fixed. The cause is the last failed task's message.
- A repository claim held by a job that has closed (the claim frees it at its next holder check; one
  listed here for long means that check cannot run).
- A job waiting for a claim that does not list it: nothing will ever grant it its turn.
- A claim or queued job that answers no query within 5 s (`unanswered`): no worker serves its task queue,
  or its code fails; the other checks could not look at it.

Each finding is one line; the exit code is 1 when there is any. Bounded: at most `limit` running
workflows are examined.
"""

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio.api.workflowservice.v1 import GetWorkflowExecutionHistoryReverseRequest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowQueryFailedError
from temporalio.service import RPCError

from contracts.claims import RepoClaimState
from contracts.jobs import JobState, JobStatus

# A job that has just asked may not be in the claim's line yet: look twice, this far apart.
RECHECK_AFTER_SECONDS = 2.0
# A query needs a worker: one that is down (or a workflow whose task fails) must not hang the doctor.
QUERY_TIMEOUT = timedelta(seconds=5)


@dataclass(frozen=True)
class Finding:
    kind: str  # task-failing | claim-held-by-closed-job | job-not-in-claim | unanswered
    workflow_id: str
    detail: str

    def line(self) -> str:
        return f"{self.kind:<26} {self.workflow_id}  {self.detail}"


async def diagnose(client: Client, limit: int = 1000, task_queue: str | None = None) -> list[Finding]:
    """Findings among running workflows (of one task queue, when given: the conductor's own)."""
    running = "ExecutionStatus = 'Running'" + (f" AND TaskQueue = '{task_queue}'" if task_queue else "")
    findings: list[Finding] = []
    failing: set[str] = set()
    async for execution in client.list_workflows(running, limit=limit):
        described = await client.get_workflow_handle(execution.id, run_id=execution.run_id).describe()
        pending = described.raw_description.pending_workflow_task
        if described.raw_description.HasField("pending_workflow_task") and pending.attempt > 1:
            failing.add(execution.id)
            cause = await _last_task_failure(client, execution.id, execution.run_id)
            findings.append(Finding("task-failing", execution.id, f"attempt {pending.attempt}: {cause}"))
    findings += await _claims_held_by_closed_jobs(client, running, failing, limit)
    findings += await _jobs_missing_from_their_claim(client, running, failing, limit)
    return findings


async def _last_task_failure(client: Client, workflow_id: str, run_id: str) -> str:
    request = GetWorkflowExecutionHistoryReverseRequest(namespace=client.namespace, maximum_page_size=100)
    request.execution.workflow_id, request.execution.run_id = workflow_id, run_id
    response = await client.workflow_service.get_workflow_execution_history_reverse(request)
    for event in response.history.events:
        if event.HasField("workflow_task_failed_event_attributes"):
            return event.workflow_task_failed_event_attributes.failure.message or "no message"
    return "cause not in the last 100 events"


async def _claims_held_by_closed_jobs(
    client: Client, running: str, skip: set[str], limit: int
) -> list[Finding]:
    findings = []
    query = f"WorkflowType = 'RepoClaimWorkflow' AND {running}"
    async for claim in client.list_workflows(query, limit=limit):
        if claim.id in skip:
            continue
        state = await _query(client, claim.id, "queue", result_type=RepoClaimState)
        if state is None:
            findings.append(
                Finding("unanswered", claim.id, "its `queue` query got no answer (no worker up?)")
            )
            continue
        for holder in state.holders:
            if not await _running(client, holder):
                findings.append(Finding("claim-held-by-closed-job", claim.id, f"holder {holder} has closed"))
    return findings


async def _jobs_missing_from_their_claim(
    client: Client, running: str, skip: set[str], limit: int
) -> list[Finding]:
    query = f"WorkflowType = 'AgentJobWorkflow' AND {running} AND JobState = '{JobState.QUEUED}'"
    suspects = [job.id async for job in client.list_workflows(query, limit=limit) if job.id not in skip]
    if not suspects:
        return []
    await asyncio.sleep(RECHECK_AFTER_SECONDS)
    findings = []
    for job_id in suspects:
        status = await client.get_workflow_handle(job_id).query("status", result_type=JobStatus)
        if status.state != JobState.QUEUED or not status.claim_workflow_id:
            continue  # moved on, or not asking yet
        try:
            position = await client.get_workflow_handle(status.claim_workflow_id).query(
                "position", job_id, result_type=int
            )
        except RPCError as err:
            findings.append(
                Finding(
                    "job-not-in-claim", job_id, f"waits for {status.claim_workflow_id}, which is gone: {err}"
                )
            )
            continue
        if position < 0:
            findings.append(
                Finding(
                    "job-not-in-claim",
                    job_id,
                    f"waits for {status.claim_workflow_id}, which does not list it",
                )
            )
    return findings


async def _query(client: Client, workflow_id: str, name: str, *args: Any, result_type: type) -> Any:
    """The query's answer, or None when it gets none in time (no worker, or its code fails)."""
    try:
        return await client.get_workflow_handle(workflow_id).query(
            name, *args, result_type=result_type, rpc_timeout=QUERY_TIMEOUT
        )
    except (RPCError, WorkflowQueryFailedError):
        return None


async def _running(client: Client, workflow_id: str) -> bool:
    try:
        described = await client.get_workflow_handle(workflow_id).describe()
    except RPCError:
        return False
    return described.status == WorkflowExecutionStatus.RUNNING
