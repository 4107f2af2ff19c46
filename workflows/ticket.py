"""One workflow per ticket (`ticket/<source>/<key>`): route it, run its agent job, report the result."""

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    from activities.routing import Router
    from contracts import search_attributes as sa
    from contracts.activity_io import RouteTicketInput
    from contracts.ids import ticket_branch, ticket_job_id
    from contracts.jobs import JobResult, JobSpec, ticket_work_item
    from contracts.tickets import TicketMessage
    from workflows.agent_job import AgentJobWorkflow


@workflow.defn
class TicketWorkflow:
    @workflow.run
    async def run(self, ticket: TicketMessage) -> JobResult:
        workflow.upsert_search_attributes(
            [
                sa.JOB_KIND.value_set("ticket"),
                sa.TICKET_KEY.value_set(ticket.key),
            ]
        )
        try:
            routed = await workflow.execute_activity_method(
                Router.route_ticket,
                RouteTicketInput(ticket=ticket),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=30)),
            )
        except ActivityError as err:
            raise _readable(err) from err
        spec = JobSpec(
            job_id=ticket_job_id(ticket.source, ticket.key),
            work=ticket_work_item(ticket),
            # The description travels once, in `work` (the prompt is made from it): a spec carrying it
            # twice made a 1 MB ticket a 2 MB child-workflow start, over Temporal's payload limit.
            ticket=ticket.model_copy(update={"description": ""}),
            route=routed.route,
            policy=routed.policy,
            branch=ticket_branch(ticket.key),
        )
        try:
            return await workflow.execute_child_workflow(
                AgentJobWorkflow.run,
                spec,
                id=spec.job_id,
                static_summary=f"Agent job for {ticket.key}: {ticket.summary}"[:200],
            )
        except ChildWorkflowError as err:
            raise _readable(err) from err


def _readable(err: ActivityError | ChildWorkflowError) -> BaseException:
    """Surface the root reason (e.g. "no route for ticket ENG-9 ...") as this workflow's failure."""
    cause = err.cause
    if isinstance(cause, ApplicationError):
        return ApplicationError(cause.message, type=cause.type, non_retryable=True)
    return err
