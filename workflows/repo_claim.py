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


@workflow.defn
class RepoClaimWorkflow:
    """Holds `RepoClaimState` and nothing else, so every decision survives continue-as-new and restarts.

    Signal handlers only change the lists; `run` alone grants and notifies. Every step tolerates any
    interleaving: a job may release while its grant is on its way, ask twice, or end before it hears back.
    """

    @workflow.init
    def __init__(self, state: RepoClaimState) -> None:
        # Set here, not in `run`: the `request` signal that starts this workflow is handled before `run`.
        self._state = state.model_copy(deep=True)
        self._changed = False

    @workflow.run
    async def run(self, state: RepoClaimState) -> None:
        state = self._state
        while True:
            self._changed = False
            self._grant()
            await self._notify_grants()
            if self._should_continue_as_new():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(self._state)
            try:
                # Idle: end after a while (the next request starts the claim again); else check holders.
                wait = state.idle_end_seconds if self._idle() else state.holder_check_seconds
                await workflow.wait_condition(lambda: self._changed, timeout=timedelta(seconds=wait))
            except TimeoutError:
                if self._idle():  # asked again, not remembered: a request may have come with the timer
                    return
                await self._free_closed_holders()

    @workflow.signal
    def request(self, request: ClaimRequest) -> None:
        state = self._state
        state.permits = request.permits
        job = request.job_workflow_id
        if job in state.holders:
            self._remember_to_notify(job)  # a retried request: say yes again
        elif job not in state.waiting:
            state.waiting.append(job)
        self._changed = True

    @workflow.signal
    def release(self, release: ClaimRelease) -> None:
        """Give the claim back, or leave the line (a job cancelled while it waited)."""
        self._forget(release.job_workflow_id)
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
            self._remember_to_notify(job)

    async def _notify_grants(self) -> None:
        """Tell each new holder; one that ended meanwhile is freed, one that released is skipped.

        The list is read afresh after each await: signals handled during a send may have changed it.
        """
        state = self._state
        workflow_id = workflow.info().workflow_id
        while state.to_notify:
            job = state.to_notify.pop(0)
            if job not in state.holders:
                continue  # released (or freed) while its grant waited: nothing to tell
            try:
                await workflow.get_external_workflow_handle(job).signal(
                    "claim_granted", ClaimGranted(claim_workflow_id=workflow_id)
                )
            except FailureError as err:  # the job ended meanwhile: free its place at once
                workflow.logger.info("claim for %s not delivered (%s); freeing it", job, err)
                self._forget(job)
                self._changed = True

    async def _free_closed_holders(self) -> None:
        if not self._state.holders:
            return
        closed = await workflow.execute_activity_method(
            ClaimChecks.closed_workflows,
            ClosedWorkflowsInput(workflow_ids=list(self._state.holders)),
            start_to_close_timeout=timedelta(seconds=30),
        )
        for job in closed.workflow_ids:
            if job in self._state.holders:
                workflow.logger.warning("%s ended without releasing its claim; freeing it", job)
            self._forget(job)

    def _remember_to_notify(self, job: str) -> None:
        if job not in self._state.to_notify:
            self._state.to_notify.append(job)

    def _forget(self, job: str) -> None:
        """Remove a job from every list it may be in; a no-op for a job in none (never raises)."""
        state = self._state
        for line in (state.holders, state.waiting, state.to_notify):
            while job in line:
                line.remove(job)

    def _idle(self) -> bool:
        return not self._state.holders and not self._state.waiting

    def _should_continue_as_new(self) -> bool:
        info = workflow.info()
        return (
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() > self._state.events_before_continue
        )
