"""Workflows the claim property tests need beside the real `RepoClaimWorkflow` (kept out of the test
module, which imports hypothesis and threads the workflow sandbox would refuse)."""

from temporalio import workflow
from temporalio.exceptions import FailureError

with workflow.unsafe.imports_passed_through():
    from contracts.claims import ClaimGranted, RepoClaimState
    from workflows.repo_claim import RepoClaimWorkflow


@workflow.defn(name="FakeClaimJob")
class FakeClaimJob:
    """A job as the claim sees it: takes `claim_granted` and counts it; ends only when terminated."""

    def __init__(self) -> None:
        self._grants = 0

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: False)

    @workflow.signal
    def claim_granted(self, grant: ClaimGranted) -> None:
        self._grants += 1

    @workflow.query
    def grants(self) -> int:
        return self._grants


@workflow.defn(name="RepoClaimWorkflow")
class ClaimWithRemoveBug(RepoClaimWorkflow):
    """The claim as it was before the fix: grants queued twice, and `holders.remove` of a job that a
    release (handled while its grant was on its way) had already removed. The property tests must find it."""

    @workflow.run
    async def run(self, state: RepoClaimState) -> None:
        await super().run(state)

    def _remember_to_notify(self, job: str) -> None:
        self._state.to_notify.append(job)

    def _forget(self, job: str) -> None:
        for line in (self._state.holders, self._state.waiting):
            if job in line:
                line.remove(job)

    async def _notify_grants(self) -> None:
        granted, self._state.to_notify = self._state.to_notify, []
        for job in granted:
            try:
                await workflow.get_external_workflow_handle(job).signal(
                    "claim_granted", ClaimGranted(claim_workflow_id=workflow.info().workflow_id)
                )
            except FailureError:
                self._state.holders.remove(job)
                self._changed = True
