"""One FIFO claim per repository (Temporal's mutex pattern): at most `permits` jobs work on it at once.

Jobs ask with the `request` signal (an activity signal-with-starts this workflow) and get `claim_granted`
when their turn comes; they give it back with `release` on every exit path. A holder whose workflow was
closed without releasing (terminated by hand, say) is found by a periodic check and its claim freed, so
a claim can never be held by nobody.
"""

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import FailureError

with workflow.unsafe.imports_passed_through():
    from activities.claims import ClaimChecks
    from contracts.activity_io import ClosedWorkflowsInput
    from contracts.claims import ClaimGranted, ClaimRelease, ClaimRequest, RepoClaimState

# How often holders are checked for having ended without releasing.
HOLDER_CHECK_INTERVAL = timedelta(minutes=2)
# With nobody holding or waiting this long, the workflow ends; the next request starts it again.
IDLE_END = timedelta(minutes=10)
# Continue-as-new before history grows large; the state (holders, line) is carried over.
EVENTS_BEFORE_CONTINUE = 5000


@workflow.defn
class RepoClaimWorkflow:
    @workflow.init
    def __init__(self, state: RepoClaimState) -> None:
        # Set here, not in `run`: the `request` signal that starts this workflow is handled before `run`.
        self._state = state.model_copy(deep=True)
        self._to_notify: list[str] = []
        self._changed = False

    @workflow.run
    async def run(self, state: RepoClaimState) -> None:
        while True:
            self._changed = False
            self._grant()
            await self._notify_grants()
            if self._should_continue_as_new():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(self._state)
            idle = not self._state.holders and not self._state.waiting
            timeout = IDLE_END if idle else HOLDER_CHECK_INTERVAL
            try:
                await workflow.wait_condition(lambda: self._changed, timeout=timeout)
            except TimeoutError:
                if idle:
                    return
                await self._free_closed_holders()

    @workflow.signal
    def request(self, request: ClaimRequest) -> None:
        state = self._state
        state.permits = request.permits
        if request.job_workflow_id in state.holders:
            self._to_notify.append(request.job_workflow_id)  # a retried request: say yes again
        elif request.job_workflow_id not in state.waiting:
            state.waiting.append(request.job_workflow_id)
        self._changed = True

    @workflow.signal
    def release(self, release: ClaimRelease) -> None:
        """Give the claim back, or leave the line (a job cancelled while it waited)."""
        state = self._state
        for line in (state.holders, state.waiting):
            if release.job_workflow_id in line:
                line.remove(release.job_workflow_id)
        self._changed = True

    @workflow.query
    def queue(self) -> RepoClaimState:
        return self._state

    @workflow.query
    def position(self, job_workflow_id: str) -> int:
        """0: holds the claim; n >= 1: n-th in line; -1: neither."""
        return self._state.position(job_workflow_id)

    def _grant(self) -> None:
        state = self._state
        while state.waiting and len(state.holders) < state.permits:
            job = state.waiting.pop(0)
            state.holders.append(job)
            self._to_notify.append(job)

    async def _notify_grants(self) -> None:
        granted, self._to_notify = self._to_notify, []
        workflow_id = workflow.info().workflow_id
        for job in granted:
            try:
                await workflow.get_external_workflow_handle(job).signal(
                    "claim_granted", ClaimGranted(claim_workflow_id=workflow_id)
                )
            except FailureError as err:  # the job ended meanwhile: free its place at once
                workflow.logger.info("claim for %s not delivered (%s); freeing it", job, err)
                self._state.holders.remove(job)
                self._changed = True

    async def _free_closed_holders(self) -> None:
        state = self._state
        if not state.holders:
            return
        closed = await workflow.execute_activity_method(
            ClaimChecks.closed_workflows,
            ClosedWorkflowsInput(workflow_ids=list(state.holders)),
            start_to_close_timeout=timedelta(seconds=30),
        )
        for job in closed.workflow_ids:
            if job in state.holders:
                workflow.logger.warning("%s ended without releasing its claim; freeing it", job)
                state.holders.remove(job)

    def _should_continue_as_new(self) -> bool:
        info = workflow.info()
        return (
            info.is_continue_as_new_suggested() or info.get_current_history_length() > EVENTS_BEFORE_CONTINUE
        )
