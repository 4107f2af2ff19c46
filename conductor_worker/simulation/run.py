"""Driving one scenario through the simulated conductor: deliver on time, settle, then report each job.

Launch times come from the Recorder (the server's clock at each launch), job outcomes from describing the
job workflows, chain membership from the account workflows' logs (`conductor_worker/simulation/chain_log.py`).
"""

import asyncio
import logging
import time
from collections import defaultdict
from datetime import datetime, timedelta

from temporalio.api.workflowservice.v1 import ListOpenWorkflowExecutionsRequest
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from activities.recorder import RecordedLaunch
from conductor_worker.config import Settings
from conductor_worker.intake.messages import parse_message
from conductor_worker.intake.poison import PoisonMessage
from conductor_worker.intake.sqs import SqsIntake
from conductor_worker.simulation.chain_log import AccountLog, ChainLogs
from conductor_worker.simulation.report import JobRow, RejectedMessage, SimulationReport, Totals
from conductor_worker.simulation.scenario import Scenario
from contracts.alarms import Alarm
from contracts.ids import account_workflow_id, incident_job_id, ticket_job_id, ticket_workflow_id
from workflows.incident_chain import DECISIONS_KEPT

# After the last message, simulated time advances in these steps until every workflow is quiet, at most this
# long: a job stuck retrying is then reported as running rather than hanging the command.
SETTLE_STEP = timedelta(seconds=1)
SETTLE_LIMIT = timedelta(hours=1)
# ... and at most this much real time without progress (no workflow became quiet): each step costs queries
# and a round trip to the test server, so a big scenario on a loaded machine may take longer in all.
SETTLE_REAL_SECONDS = 120
# Real time one step of simulated time may take (the test server waits for outstanding workflow tasks).
SLEEP_LIMIT_SECONDS = 60


log = logging.getLogger(__name__)


class SimulationStuck(RuntimeError):
    """Simulated time stopped: some workflow task never completes."""


_OUTCOMES = {
    WorkflowExecutionStatus.COMPLETED: "succeeded",
    WorkflowExecutionStatus.RUNNING: "running",
    WorkflowExecutionStatus.CANCELED: "cancelled",
    WorkflowExecutionStatus.TERMINATED: "terminated",
    WorkflowExecutionStatus.TIMED_OUT: "timed_out",
}


class SimulationRun:
    def __init__(self, env: WorkflowEnvironment, settings: Settings, scenario: Scenario) -> None:
        self._env = env
        self._client = env.client
        self._scenario = scenario
        self._intake = SqsIntake(env.client, settings, None)
        policy = settings.chain_policy()
        self._chains = ChainLogs(env.client, idle_limit=policy.max_age + policy.window)
        self._mark = datetime.min
        self._now = datetime.min
        self._last_message_at = datetime.min
        self._ticket_messages: dict[tuple[str, str], list[int]] = defaultdict(list)
        self._rejected: list[RejectedMessage] = []

    # Delivery ------------------------------------------------------------------------------------

    async def deliver_all(self) -> None:
        # The test server's clock starts at the real time; this instant is the scenario's `start`.
        self._mark = self._now = await self._env.get_current_time()
        for message in self._scenario.messages:
            await self._advance_to(self._mark + message.at)
            await self._deliver(message.number, message.body)
        self._last_message_at = self._now

    async def _advance_to(self, target: datetime) -> None:
        """Sleep in simulated time; delivery never runs early, and late only by real time spent delivering."""
        self._now = await self._env.get_current_time()
        if target <= self._now:
            return
        await self._chains.before_sleep(target)
        await self._sleep(target - self._now)
        self._now = target

    async def _deliver(self, number: int, body: str) -> None:
        try:
            work = parse_message(body)
        except PoisonMessage as err:
            self._rejected.append(RejectedMessage(number=number, reason=err.reason))
            return
        if not isinstance(work, Alarm):
            self._ticket_messages[(work.source, work.key)].append(number)
            await self._intake.start_ticket(work)
            return
        await self._chains.before_delivery(work)
        await self._intake.deliver_alarm(work)
        await self._chains.delivered(work, number, self._now)

    async def _sleep(self, duration: timedelta) -> None:
        """Advance simulated time; the test server advances only once no workflow task is outstanding, so a
        workflow task that never completes would hold this for ever: bounded, and the culprits named."""
        try:
            async with asyncio.timeout(SLEEP_LIMIT_SECONDS):
                await self._env.sleep(duration)
        except TimeoutError:
            raise SimulationStuck(
                f"simulated time did not advance by {duration} within {SLEEP_LIMIT_SECONDS} s of real time; "
                f"workflows with a workflow task outstanding: {await self._outstanding() or 'none found'}"
            ) from None

    async def _outstanding(self) -> list[str]:
        request = ListOpenWorkflowExecutionsRequest(namespace=self._client.namespace, maximum_page_size=200)
        listed = await self._client.workflow_service.list_open_workflow_executions(
            request, timeout=timedelta(seconds=10)
        )
        stuck = []
        for execution in listed.executions:
            handle = self._client.get_workflow_handle(
                execution.execution.workflow_id, run_id=execution.execution.run_id
            )
            task = (
                await handle.describe(rpc_timeout=timedelta(seconds=10))
            ).raw_description.pending_workflow_task
            if task.attempt:
                stuck.append(f"{execution.execution.workflow_id} (task attempt {task.attempt}, {task.state})")
        return stuck

    # Settling ------------------------------------------------------------------------------------

    async def settle(self) -> list[str]:
        """Advance simulated time until every ticket, account and job workflow is quiet (bounded)."""
        waited = timedelta()
        real_deadline = time.monotonic() + SETTLE_REAL_SECONDS
        pending = {ticket_workflow_id(source, key) for source, key in self._ticket_messages}
        unsettled_before: list[str] | None = None
        while True:
            pending = {wid for wid in pending if await self._status(wid) == WorkflowExecutionStatus.RUNNING}
            unsettled = sorted(pending) + await self._chains.unsettled()
            if not unsettled:
                break
            if unsettled != unsettled_before:
                real_deadline = time.monotonic() + SETTLE_REAL_SECONDS
                unsettled_before = unsettled
            if waited >= SETTLE_LIMIT or time.monotonic() > real_deadline:
                for account in self._chains.accounts:
                    if lost := await self._unanswered_task(account_workflow_id(account)):
                        unsettled.append(lost)
                log.warning("simulation not settled after %s simulated: %s", waited, unsettled)
                return [f"not settled after {waited} of simulated time; still running: {unsettled}"]
            await self._sleep(SETTLE_STEP)
            waited += SETTLE_STEP
        self._now = await self._env.get_current_time()
        return []

    async def _unanswered_task(self, workflow_id: str) -> str | None:
        """A workflow task of an account's workflow that the server started and the worker never answered,
        if its history ends with one. Seen under load on the test server: a run whose last events are
        tasks started while an earlier one was still outstanding, none completed, failed or timed out, and
        describe listing no pending task; the worker logged nothing."""
        history = await self._client.get_workflow_handle(workflow_id).fetch_history(
            rpc_timeout=timedelta(seconds=10)
        )
        last = history.events[-1] if history.events else None
        if last is None or not last.HasField("workflow_task_started_event_attributes"):
            return None
        return (
            f"{workflow_id}: its workflow task started at event {last.event_id} "
            f"({last.event_time.ToDatetime():%H:%M:%S} real time) was never answered"
        )

    async def _status(self, workflow_id: str) -> WorkflowExecutionStatus | None:
        try:
            return (await self._client.get_workflow_handle(workflow_id).describe()).status
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return None
            raise

    # The report ----------------------------------------------------------------------------------

    async def report(
        self, launches: list[RecordedLaunch], notes: list[str], real_seconds: float
    ) -> SimulationReport:
        first_launch: dict[str, RecordedLaunch] = {}
        for launch in sorted(launches, key=lambda launch: launch.at):
            first_launch.setdefault(launch.job_id, launch)
        jobs = [
            await self._ticket_row(key, numbers, first_launch)
            for key, numbers in self._ticket_messages.items()
        ]
        for account, log in self._chains.accounts.items():
            jobs += await self._incident_rows(account, log, first_launch)
            if log.lost_decisions:
                notes.append(
                    f"account {account}: more than {DECISIONS_KEPT} placements between two reads of its decision "
                    "log; message lists of its chains are partial (alarm counts are exact)"
                )
        jobs.sort(
            key=lambda job: (job.started_at is None, job.started_at or self._scenario.start, job.job_id)
        )
        return SimulationReport(
            scenario=self._scenario.name,
            start=self._scenario.start,
            last_message_at=self._simulated(self._last_message_at),
            settled_at=self._simulated(self._now),
            real_seconds=round(real_seconds, 2),
            jobs=jobs,
            rejected=self._rejected,
            totals=Totals(
                messages=len(self._scenario.messages),
                rejected=len(self._rejected),
                ticket_messages=sum(len(numbers) for numbers in self._ticket_messages.values()),
                alarm_messages=sum(len(numbers) for numbers in self._chains.event_messages.values()),
                ticket_jobs=sum(job.kind == "ticket" for job in jobs),
                incident_jobs=sum(job.kind == "incident" for job in jobs),
                chains=sum(len(log.chains) for log in self._chains.accounts.values()),
                launched=sum(job.started_at is not None for job in jobs),
            ),
            notes=notes,
        )

    async def _ticket_row(
        self, ticket: tuple[str, str], numbers: list[int], launches: dict[str, RecordedLaunch]
    ) -> JobRow:
        source, key = ticket
        job_id = ticket_job_id(source, key)
        # Routing happens in the ticket workflow: a ticket without a route never gets a job workflow.
        outcome, reason = await self._outcome(job_id)
        if outcome == "unknown":
            outcome, reason = await self._outcome(ticket_workflow_id(source, key))
        return JobRow(
            job_id=job_id,
            kind="ticket",
            subject=key,
            outcome=outcome,
            reason=reason,
            messages=numbers,
            **self._launch_fields(launches.get(job_id)),
        )

    async def _incident_rows(
        self, account: str, log: AccountLog, launches: dict[str, RecordedLaunch]
    ) -> list[JobRow]:
        members = self._chains.members(account)
        rows = []
        for chain in log.chains.values():
            for job_number in range(1, chain.jobs_started + 1):
                job_id = incident_job_id(chain.chain_id, job_number)
                outcome, reason = await self._outcome(job_id)
                rows.append(
                    JobRow(
                        job_id=job_id,
                        kind="incident",
                        subject=chain.chain_id,
                        account=account,
                        outcome=outcome,
                        reason=reason,
                        messages=sorted(members.messages[chain.chain_id]),
                        alarm_count=chain.alarm_count,
                        alarm_event_ids=members.alarm_ids[chain.chain_id],
                        members_complete=not log.lost_decisions,
                        **self._launch_fields(launches.get(job_id)),
                    )
                )
        return rows

    def _launch_fields(self, launch: RecordedLaunch | None) -> dict:
        if launch is None:
            return {}
        route = launch.spec.route if launch.spec else None
        return {
            "started_at": self._simulated(launch.at),
            "repository": (route.name or route.repo_url) if route else "",
        }

    async def _outcome(self, workflow_id: str) -> tuple[str, str]:
        status = await self._status(workflow_id)
        if status != WorkflowExecutionStatus.FAILED:
            return _OUTCOMES.get(status, "unknown"), ""
        # result() would otherwise unlock time skipping and let the account workflows' idle timers fire.
        with self._env.auto_time_skipping_disabled():
            try:
                await self._client.get_workflow_handle(workflow_id).result()
            except WorkflowFailureError as err:
                cause = err.cause
                return "failed", cause.message if isinstance(cause, ApplicationError) else str(cause or err)
        return "failed", ""

    def _simulated(self, at: datetime) -> datetime:
        """The test server's clock -> scenario time."""
        return self._scenario.start + (at - self._mark)
