"""Workflows the chain property tests need beside the real `IncidentChainWorkflow` (kept out of the test
module, which imports hypothesis and threads the workflow sandbox would refuse)."""

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from contracts.activity_io import LaunchAgentInput
    from contracts.incidents import IncidentChainInput, JobFinished
    from contracts.jobs import JobSpec, JobState
    from workflows.incident_chain import IncidentChainWorkflow


@workflow.defn(name="AgentJobWorkflow")
class RecordedIncidentJob:
    """An incident job as the chain sees it: launches once through the recorder, reports SUCCEEDED, ends.

    The real `AgentJobWorkflow` (routing, claim, staging, publishing) costs a dozen activities per job;
    the chain only starts it and hears `job_finished`, which this does in one activity.
    """

    @workflow.run
    async def run(self, spec: JobSpec) -> None:
        await workflow.execute_activity(
            "launch_agent",
            LaunchAgentInput(job_id=spec.job_id, attempt=1),
            start_to_close_timeout=timedelta(seconds=30),
        )
        await workflow.get_external_workflow_handle(spec.notify_workflow_id).signal(
            "job_finished", JobFinished(chain_id=spec.chain_id, job_id=spec.job_id, state=JobState.SUCCEEDED)
        )


@workflow.defn(name="IncidentChainWorkflow")
class ChainForgetsSeenIds(IncidentChainWorkflow):
    """A chain workflow that loses the event ids it has seen at continue-as-new: a redelivered alarm is
    then counted (and may open a chain) again. The property tests must find it."""

    @workflow.run
    async def run(self, input: IncidentChainInput) -> None:
        await super().run(input)

    def _carry_over(self) -> IncidentChainInput:
        carried = super()._carry_over()
        carried.chains = carried.chains.model_copy(update={"seen": {}})
        return carried
