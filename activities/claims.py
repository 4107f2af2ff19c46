"""The Temporal calls behind repository claims: join a repository's line, find holders that ended."""

from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from contracts.activity_io import ClosedWorkflowsInput, ClosedWorkflowsResult, RequestClaimInput
from contracts.claims import RepoClaimState, claim_workflow_id

# By name: the claim workflow imports these activities, so importing it here would be circular.
CLAIM_WORKFLOW = "RepoClaimWorkflow"


class ClaimChecks:
    def __init__(self, client: Client, task_queue: str) -> None:
        self._client = client
        self._task_queue = task_queue

    @activity.defn(name="request_claim")
    async def request_claim(self, input: RequestClaimInput) -> None:
        """Signal-with-start: joins the line of a running claim workflow or starts it. Safe to repeat."""
        await self._client.start_workflow(
            CLAIM_WORKFLOW,
            RepoClaimState(repo_url=input.repo_url, permits=input.request.permits),
            id=claim_workflow_id(input.repo_url),
            task_queue=self._task_queue,
            start_signal="request",
            start_signal_args=[input.request],
            static_summary=f"Repository claim: {input.repo_url}"[:200],
        )

    @activity.defn(name="closed_workflows")
    async def closed_workflows(self, input: ClosedWorkflowsInput) -> ClosedWorkflowsResult:
        closed = []
        for workflow_id in input.workflow_ids:
            try:
                described = await self._client.get_workflow_handle(workflow_id).describe()
            except RPCError as err:
                if err.status != RPCStatusCode.NOT_FOUND:
                    raise
                closed.append(workflow_id)
                continue
            if described.status != WorkflowExecutionStatus.RUNNING:
                closed.append(workflow_id)
        return ClosedWorkflowsResult(workflow_ids=closed)
