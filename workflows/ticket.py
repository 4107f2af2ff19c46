"""One workflow per ticket (`ticket/<source>/<key>`): route it, run its agent job, report the result."""

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    from activities.routing import Router
    from contracts import search_attributes as sa
    from contracts.activity_io import RouteTicketInput
    from contracts.ids import ticket_branch, ticket_job_id
    from contracts.jobs import JobResult, JobSpec, ticket_work_item
    from contracts.tickets import TicketMessage
    from workflows.agent_job import AgentJobWorkflow
    from workflows.job_outcomes import readable_failure


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
            raise readable_failure(err) from err
        spec = JobSpec(
            job_id=ticket_job_id(ticket.source, ticket.key),
            work=ticket_work_item(ticket),
            # The description travels once, in `work` (the prompt is made from it): a spec carrying it
            # twice made a 1 MB ticket a 2 MB child-workflow start, over Temporal's payload limit.
            ticket=ticket.model_copy(update={"description": ""}),
            route=routed.route,
            policy=routed.policy,
            branch=ticket_branch(ticket.key),
            status_comments=routed.status_comments,
        )
        try:
            return await workflow.execute_child_workflow(
                AgentJobWorkflow.run,
                spec,
                id=spec.job_id,
                static_summary=f"Agent job for {ticket.key}: {ticket.summary}"[:200],
            )
        except ChildWorkflowError as err:
            raise readable_failure(err) from err
