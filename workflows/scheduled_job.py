"""One run of a Temporal Schedule (`conductor schedule create`): an ordinary agent job of its own.

Each run gets its own job id and branch from its scheduled time, so runs never share a PR, and a run the
schedule's overlap policy skipped leaves no trace.
"""

from temporalio import workflow
from temporalio.common import SearchAttributeKey
from temporalio.exceptions import ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    from contracts import search_attributes as sa
    from contracts.jobs import JobResult, JobSpec, WorkItem
    from contracts.schedules import ScheduledJob, run_stamp, scheduled_branch, scheduled_job_id
    from workflows.agent_job import AgentJobWorkflow
    from workflows.job_outcomes import readable_failure

# Set by Temporal on every workflow a schedule starts.
SCHEDULED_START_TIME = SearchAttributeKey.for_datetime("TemporalScheduledStartTime")


@workflow.defn
class ScheduledJobWorkflow:
    @workflow.run
    async def run(self, job: ScheduledJob) -> JobResult:
        # Started by hand (`temporal workflow start`), a run takes its own start time.
        at = workflow.info().typed_search_attributes.get(SCHEDULED_START_TIME) or workflow.info().start_time
        workflow.upsert_search_attributes(
            [sa.JOB_KIND.value_set("scheduled"), sa.TICKET_KEY.value_set(f"{job.name}/{run_stamp(at)}")]
        )
        spec = JobSpec(
            job_id=scheduled_job_id(job.name, at),
            work=WorkItem(kind="scheduled", key=job.name, summary=job.summary, description=job.prompt),
            route=job.route,
            policy=job.policy,
            branch=scheduled_branch(job.name, at),
        )
        try:
            return await workflow.execute_child_workflow(
                AgentJobWorkflow.run,
                spec,
                id=spec.job_id,
                static_summary=f"Scheduled job {job.name}: {job.summary}"[:200],
            )
        except ChildWorkflowError as err:
            raise readable_failure(err) from err
