"""A job's side of its repository's claim: join the line, wait for the grant, give it back.

Deterministic workflow code used by `AgentJobWorkflow`; the claim itself is `RepoClaimWorkflow`.
"""

from collections.abc import Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import FailureError
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from activities.claims import ClaimChecks
    from contracts.activity_io import RequestClaimInput
    from contracts.claims import ClaimGranted, ClaimRelease, ClaimRequest, claim_workflow_id
    from contracts.routing import RepoRoute


class JobClaim:
    def __init__(self) -> None:
        self.workflow_id = ""
        self.granted = False

    def on_granted(self, grant: ClaimGranted) -> None:
        # A grant still on its way when the job released is ignored: the claim already forgot the job.
        if grant.claim_workflow_id == self.workflow_id:
            self.granted = True

    async def acquire(
        self, route: RepoRoute, retry_policy: RetryPolicy, on_in_line: Callable[[], None] | None = None
    ) -> None:
        """Join the repository's FIFO line and wait for the turn (the job's state is QUEUED meanwhile);
        `on_in_line` runs once the job is in the line, before the wait."""
        self.workflow_id = claim_workflow_id(route.repo_url)
        self.granted = False
        request = ClaimRequest(job_workflow_id=workflow.info().workflow_id, permits=route.max_concurrent_jobs)
        await workflow.execute_activity_method(
            ClaimChecks.request_claim,
            RequestClaimInput(repo_url=route.repo_url, request=request),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=retry_policy,
            # A job cancelled while asking waits for the request to land, so its `release` always comes
            # after it: a request landing late would leave the job in line, and the claim held, for nobody.
            cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )
        if on_in_line is not None:
            on_in_line()
        await workflow.wait_condition(lambda: self.granted)

    async def release(self) -> None:
        """Give the claim back, or leave the line; safe to call on every exit path, held or not."""
        if not self.workflow_id:
            return
        try:
            await workflow.get_external_workflow_handle(self.workflow_id).signal(
                "release", ClaimRelease(job_workflow_id=workflow.info().workflow_id)
            )
        except FailureError as err:  # the claim workflow has ended, so it holds nothing for us
            workflow.logger.info("claim release for %s not delivered: %s", self.workflow_id, err)
        self.granted = False
