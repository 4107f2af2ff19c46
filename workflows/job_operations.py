"""The agent job's state and its operator surface: the signals, updates and queries that `temporal workflow
signal|update|query` and the conductor's CLI send to a job (cancel, retry, steer, budget answers, status),
and the relays from its claim, its agent and its incident chain.

`AgentJobWorkflow` (workflows/agent_job.py) inherits these handlers and drives the job with this state.
"""

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, FailureError

with workflow.unsafe.imports_passed_through():
    from activities.failure_notes import FailureNotes
    from activities.steering import SteeringMailbox
    from contracts import search_attributes as sa
    from contracts.activity_io import (
        AgentChannelState,
        AwaitSteeringDeliveryInput,
        DeliverAlarmsInput,
        DeliverSteeringInput,
        FailureNoteInput,
    )
    from contracts.alarms import Alarm, AlarmBatch
    from contracts.claims import ClaimGranted
    from contracts.incidents import JobFinished
    from contracts.jobs import AgentProgress, JobSpec, JobState, JobStatus
    from contracts.operator import (
        BudgetApproval,
        BudgetExceeded,
        BudgetRefusal,
        BudgetState,
        CancelRequest,
        RetryRequest,
        SteerAck,
        SteeringDelivered,
        SteerRequest,
    )
    from contracts.policies import JobPolicy
    from contracts.usage import ModelUsage
    from workflows.job_budget import JobBudget
    from workflows.job_claim import JobClaim
    from workflows.job_details import details_markdown
    from workflows.job_outcomes import RETRYABLE, TERMINAL
    from workflows.job_status import JobStatusComment

# Quick local side effects get this long per try; it is also how long a conductor that died mid-call
# delays the job before the retry runs elsewhere. How many tries: the job kind's policy.
SHORT_TIMEOUT = timedelta(seconds=30)
# Alarms kept in the job's state (and history payloads); the count stays exact beyond it.
DOSSIER_LIMIT = 100


class JobOperations:
    """What an operator can ask of a job, and what it can see of it."""

    def __init__(self) -> None:
        self._state = JobState.QUEUED
        self._attempt = 1
        self._launches_this_run = 0
        self._spec: JobSpec | None = None
        self._agent_id = ""
        # The current attempt's await activity id, once scheduled (empty on runs from before the channel).
        self._watch_id = ""
        self._pr_url: str | None = None
        self._reason = ""
        self._history: list[str] = []
        self._dossier: list[Alarm] = []
        self._dossier_count = 0
        self._claim = JobClaim()
        self._cancel: CancelRequest | None = None
        self._retry: RetryRequest | None = None
        self._steering: list[SteerRequest] = []
        # (attempt, seq): the highest instruction a model request of that attempt carried, as the model
        # gateway's `steering_delivered` signal said; only the latest attempt's is kept.
        self._steering_delivered = (0, 0)
        self._notes: list[str] = []
        # A budget pause's note, left while the job waits (kept so the task is not collected).
        self._pause_note: asyncio.Task | None = None
        self._progress: AgentProgress | None = None
        # The usage last put in the search attributes (_show_usage).
        self._usage_shown: ModelUsage | None = None
        self._budget = JobBudget()
        # The live status comment on the ticket (workflows/job_status.py), and the agent's last report.
        self._status_comment = JobStatusComment()
        self._agent_report = ""
        # Set when Python collects this run's coroutines after its worker stopped with the run still cached:
        # the `finally` blocks then run outside any workflow loop and must not call workflow APIs (the SDK
        # raises). Nothing is lost: the next worker replays the run and releases and stops from there.
        self._dropped = False

    @workflow.signal
    def cancel(self, request: CancelRequest | None = None) -> None:
        """Stop the agent for real, give the repository back, leave a note; `retry` can run it again."""
        self._cancel = request or CancelRequest()

    @workflow.signal
    def retry(self, request: RetryRequest | None = None) -> None:
        """Run a FAILED, CRASHED, TIMED_OUT, NO_CHANGES or CANCELLED job again, as a new attempt."""
        request = request or RetryRequest()
        if self._state in RETRYABLE:
            self._retry = request
        else:
            self._log(f"retry from {request.by} ignored: the job is {self._state}")

    @workflow.update
    async def steer(self, request: SteerRequest) -> SteerAck:
        """Append instructions for the agent; the running agent gets them with its next heartbeat."""
        self._steering.append(request)
        seq = len(self._steering)
        attempt = self._attempt
        self._log(f"steering #{seq} from {request.by}")
        running = self._state == JobState.RUNNING
        queued = await workflow.execute_activity_method(
            SteeringMailbox.deliver_steering,
            DeliverSteeringInput(job_id=self._spec.job_id, seq=seq, text=request.text, by=request.by),
            **self._short(),
        )
        delivered = False
        if running and workflow.patched("steer-awaits-model-delivery"):
            # A coding CLI's next model request carries it (model_gateway/steering.py); bounded by config.
            if workflow.patched("steering-delivered-signal"):
                wait = queued.delivery_wait_seconds if queued is not None else 0.0
                delivered = await self._steering_heard(attempt, seq, wait)
            else:
                # Runs from before the signal: an activity polls the mailbox's delivery record.
                delivered = await workflow.execute_activity_method(
                    SteeringMailbox.await_steering_delivery,
                    AwaitSteeringDeliveryInput(job_id=self._spec.job_id, attempt=self._attempt, seq=seq),
                    start_to_close_timeout=timedelta(minutes=10),
                    heartbeat_timeout=timedelta(seconds=30),
                    retry_policy=RetryPolicy(maximum_attempts=3),
                )
        return SteerAck(
            seq=seq,
            attempt=self._attempt,
            state=self._state,
            delivered_to_running_agent=running,
            delivered_to_agent=delivered,
        )

    async def _steering_heard(self, attempt: int, seq: int, wait_seconds: float) -> bool:
        """True once the model gateway said a request of `attempt` carried instruction `seq`; waits at most
        `wait_seconds`, and no longer than the attempt lasts."""

        def heard() -> bool:
            return self._steering_delivered[0] == attempt and self._steering_delivered[1] >= seq

        if wait_seconds > 0 and not heard():
            try:
                await workflow.wait_condition(
                    lambda: heard() or self._attempt != attempt or self._state in TERMINAL,
                    timeout=timedelta(seconds=wait_seconds),
                )
            except TimeoutError:
                pass
        return heard()

    @workflow.signal
    def steering_delivered(self, delivered: SteeringDelivered) -> None:
        """From the model gateway (any replica): a model request of `attempt` carried the instructions up to
        `seq`. Sent twice, late, out of order or for an ended attempt, it changes nothing more."""
        seen_attempt, seen_seq = self._steering_delivered
        if delivered.attempt < seen_attempt or delivered.attempt > self._attempt:
            return
        # Never past what was sent: a signal cannot mark an instruction delivered before it exists.
        seq = min(delivered.seq, len(self._steering))
        if delivered.attempt > seen_attempt:
            self._steering_delivered = (delivered.attempt, seq)
        elif seq > seen_seq:
            self._steering_delivered = (seen_attempt, seq)

    @steer.validator
    def _steerable(self, request: SteerRequest) -> None:
        if self._spec is None or self._state in TERMINAL:
            raise ValueError(f"job is {self._state}: only a queued or running job can be steered")

    @workflow.signal
    def claim_granted(self, grant: ClaimGranted) -> None:
        self._claim.on_granted(grant)

    @workflow.signal
    def progress(self, progress: AgentProgress) -> None:
        """The agent gateway's relay of the agent's step states, last log lines and model usage."""
        self._progress = progress
        self._show_usage()
        if self._state == JobState.RUNNING:
            self._status_comment.progress(self._spec, self._attempt, progress)

    @workflow.signal
    async def budget_exceeded(self, request: BudgetExceeded) -> None:
        """From the model gateway, which now holds the agent's next model request: wait for an operator."""
        if self._state != JobState.RUNNING or not self._budget.exceeded(request, self._attempt):
            return
        self._log(
            f"budget spent: attempt {request.attempt} used {request.used_tokens} tokens"
            f" (${request.used_cost_usd:.6f})"
        )
        self._set_state(JobState.AWAITING_APPROVAL)
        if workflow.patched("budget-pause-note"):
            # Not awaited: the approval window runs from now, however long Jira or GitHub take to answer.
            self._pause_note = asyncio.create_task(self._note_budget_pause(request))
        window = self._spec.policy.approval_window_seconds
        try:
            await workflow.wait_condition(
                lambda: not self._budget.awaiting or self._state != JobState.AWAITING_APPROVAL,
                timeout=timedelta(seconds=window),
            )
        except TimeoutError:
            self._budget.expire(window)

    async def _note_budget_pause(self, request: BudgetExceeded) -> None:
        """A note on the ticket (and PR) saying the job waits, with the lines that answer it."""
        note = FailureNoteInput(
            spec=self._spec,
            attempt=self._attempt,
            state=JobState.AWAITING_APPROVAL,
            reason=self._budget.reason(),
            used_tokens=request.used_tokens,
        )
        await self._post_note(note)

    async def _post_note(self, note: FailureNoteInput) -> None:
        """Leave `note` on the ticket (and PR); a note that fails is logged, it never fails the job.
        With a status comment, the note is its next edit and the ticket gets no second comment."""
        if self._status_comment.enabled:
            self._post_status(note.state, note=note, reason=note.reason)
            note = note.model_copy(update={"on_ticket": False})
        try:
            left = await workflow.execute_activity_method(
                FailureNotes.leave_failure_note, note, **self._short()
            )
            self._notes += left.left_at
        except ActivityError as err:
            self._log(f"could not leave a note: {err.cause or err}")

    @workflow.update
    def approve_budget(self, approval: BudgetApproval) -> BudgetState:
        """Let the held model request go on, with `raise_tokens` more for this attempt."""
        self._budget.approve(approval)
        self._log(f"budget raised by {approval.raise_tokens} tokens by {approval.by}")
        self._set_state(JobState.RUNNING)
        return self._budget.state(self._attempt)

    @workflow.update
    def refuse_budget(self, refusal: BudgetRefusal) -> BudgetState:
        """End the job FAILED with reason `budget`; the held request gets an error, the agent is stopped."""
        self._budget.refuse(refusal)
        return self._budget.state(self._attempt)

    @approve_budget.validator
    def _approvable(self, approval: BudgetApproval) -> None:
        self._check_awaiting_approval()

    @refuse_budget.validator
    def _refusable(self, refusal: BudgetRefusal) -> None:
        self._check_awaiting_approval()

    def _check_awaiting_approval(self) -> None:
        if self._state != JobState.AWAITING_APPROVAL:
            raise ValueError(f"job is {self._state}: only a job AWAITING_APPROVAL has a budget to decide")

    @workflow.query
    def budget(self) -> BudgetState:
        return self._budget.state(self._attempt)

    @workflow.signal
    async def add_alarms(self, batch: AlarmBatch) -> None:
        """Later alarms of this job's incident chain: extra context for the running job."""
        self._add_to_dossier(batch.alarms)
        running = self._state in (JobState.RUNNING, JobState.AWAITING_APPROVAL)
        if running and workflow.patched("alarms-reach-running-agent"):
            # Its coding CLI's next model request carries them (model_gateway/steering.py); a later launch
            # gets the whole dossier in its task files instead.
            await workflow.execute_activity_method(
                SteeringMailbox.deliver_later_alarms,
                DeliverAlarmsInput(job_id=self._spec.job_id, alarms=batch.alarms),
                **self._short(),
            )

    @workflow.query
    def agent_channel(self) -> AgentChannelState:
        """For the agent gateway, when Temporal does not know the agent's await activity: is its attempt
        still expecting the agent (not yet awaited, or between two tries), or has it ended?"""
        expecting = self._state in (JobState.LAUNCHING, JobState.RUNNING, JobState.AWAITING_APPROVAL)
        return AgentChannelState(
            attempt=self._attempt,
            open=expecting and self._cancel is None and not self._budget.ended,
            activity_id=self._watch_id,
        )

    @workflow.query
    def status(self) -> JobStatus:
        return JobStatus(
            job_id=self._spec.job_id if self._spec else workflow.info().workflow_id,
            state=self._state,
            attempt=self._attempt,
            agent_id=self._agent_id,
            branch=self._spec.branch if self._spec else "",
            pr_url=self._pr_url,
            reason=self._reason,
            history=list(self._history),
            dossier_count=self._dossier_count,
            dossier_recent=list(self._dossier),
            claim_workflow_id=self._claim.workflow_id,
            steering=[entry.text for entry in self._steering],
            notes=list(self._notes) + self._status_comment.notes,
            progress=self._progress,
        )

    # -- bookkeeping shared with the job's run --------------------------------------------------------------

    def _short(self) -> dict:
        return dict(start_to_close_timeout=SHORT_TIMEOUT, retry_policy=self._retry_policy())

    def _retry_policy(self) -> RetryPolicy:
        policy = self._spec.policy if self._spec and self._spec.policy else JobPolicy()
        return RetryPolicy(
            maximum_attempts=policy.activity_max_attempts, maximum_interval=timedelta(seconds=10)
        )

    def _add_to_dossier(self, alarms: list[Alarm]) -> None:
        self._dossier_count += len(alarms)
        self._dossier = (self._dossier + alarms)[-DOSSIER_LIMIT:]

    def _log(self, line: str) -> None:
        self._history.append(f"{workflow.now().isoformat()} {line}")

    def _set_state(self, state: JobState) -> None:
        self._state = state
        self._log(str(state))
        if state in TERMINAL:
            self._count_end(state)
        # The agent's result brings the final count, which the last progress relay may have missed.
        self._show_usage()
        workflow.upsert_search_attributes([sa.JOB_STATE.value_set(state.value)])
        workflow.set_current_details(details_markdown(self.status(), self._spec))
        if state in (JobState.RUNNING, JobState.SUCCEEDED):
            self._post_status(state, pr_url=self._pr_url or "")

    def _post_status(self, phase: str, **fields) -> None:
        """The status comment's next edit (a no-op without one); never waited for here."""
        self._status_comment.post(self._spec, phase, self._attempt, **fields)

    async def _finish(self) -> None:
        """Before the run closes: the status comment's last edit (briefly), then the open handlers."""
        await self._status_comment.flush()
        await workflow.wait_condition(workflow.all_handlers_finished)

    async def _report_to(self, workflow_id: str) -> None:
        """Tell the incident chain how its job ended, so its failed-job policy (and its report) can act."""
        if not workflow_id or self._spec is None:
            return
        state = self._state if self._state in TERMINAL else JobState.FAILED
        route = self._spec.route
        finished = JobFinished(
            chain_id=self._spec.chain_id,
            job_id=self._spec.job_id,
            state=state,
            reason=self._reason,
            github_repo=(route.github_repo or "") if route else "",
            attempt=self._attempt,
            report=self._agent_report,
            pr_url=self._pr_url or "",
        )
        try:
            await workflow.get_external_workflow_handle(workflow_id).signal("job_finished", finished)
        except FailureError as err:  # the account workflow may have ended (idle); nothing waits for us then
            workflow.logger.info("could not report to %s: %s", workflow_id, err)

    def _count_end(self, state: JobState) -> None:
        """Prometheus (conductor_worker/metrics.py); the workflow's meter records nothing while replaying."""
        kind = self._spec.work.kind if self._spec else ""
        meter = workflow.metric_meter().with_additional_attributes({"kind": kind, "state": state.value})
        meter.create_counter("conductor_jobs_ended", "Agent jobs that reached an end state").add(1)
        meter.create_histogram_timedelta(
            "conductor_job_duration_seconds", "From a job's start to an end state"
        ).record(workflow.now() - workflow.info().start_time)

    def _count_lost_agent(self) -> None:
        kind = self._spec.work.kind if self._spec else ""
        workflow.metric_meter().create_counter(
            "conductor_agents_lost", "Agents that crashed, fell silent or never handshook"
        ).add(1, {"kind": kind})

    def _show_usage(self) -> None:
        """Model usage, when it changed: in the search attributes and the Web UI's current details."""
        usage = self._progress.model_usage if self._progress else None
        if (
            usage is None
            or usage == self._usage_shown
            or not workflow.patched("model-usage-search-attributes")
        ):
            return
        self._usage_shown = usage
        workflow.upsert_search_attributes(
            [sa.MODEL_TOKENS.value_set(usage.tokens), sa.MODEL_COST_USD.value_set(usage.cost_usd)]
        )
        workflow.set_current_details(details_markdown(self.status(), self._spec))
