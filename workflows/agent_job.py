"""One agent job: route (incidents), claim the repository, stage task files, launch an agent, await it,
publish. A failed or cancelled job leaves a note, then waits for an operator's `retry` for a while.
"""

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, FailureError, TimeoutType
from temporalio.exceptions import TimeoutError as TemporalTimeoutError

with workflow.unsafe.imports_passed_through():
    from activities.agent_results import AgentResultWatcher
    from activities.failure_notes import FailureNotes
    from activities.launch_local import LocalLauncher
    from activities.publish_git import LocalGitPublisher
    from activities.publish_github import GithubPublisher
    from activities.routing import Router
    from activities.steering import SteeringMailbox
    from activities.task_files import TaskFileStager
    from contracts import search_attributes as sa
    from contracts.activity_io import (
        AwaitAgentInput,
        AwaitSteeringDeliveryInput,
        DeliverAlarmsInput,
        DeliverSteeringInput,
        FailureNoteInput,
        LaunchAgentInput,
        LaunchAgentResult,
        PublishInput,
        PublishResult,
        RouteIncidentInput,
        StageTaskFilesInput,
        StopAgentInput,
    )
    from contracts.alarms import Alarm, AlarmBatch
    from contracts.claims import ClaimGranted
    from contracts.incidents import JobFinished
    from contracts.jobs import (
        AgentProgress,
        AgentResult,
        AgentStatus,
        JobResult,
        JobSpec,
        JobState,
        JobStatus,
    )
    from contracts.operator import (
        BudgetApproval,
        BudgetExceeded,
        BudgetRefusal,
        BudgetState,
        CancelRequest,
        RetryRequest,
        SteerAck,
        SteerRequest,
    )
    from contracts.policies import JobPolicy
    from workflows.job_budget import JobBudget
    from workflows.job_claim import JobClaim
    from workflows.job_details import details_markdown
    from workflows.job_outcomes import RETRYABLE, TERMINAL, AgentLost, JobEnded

# Quick local side effects get this long per try; it is also how long a conductor that died mid-call
# delays the job before the retry runs elsewhere. How many tries: the job kind's policy.
# How long a refused budget's held request gets to be answered before the agent is stopped.
BUDGET_ANSWER_GRACE = timedelta(seconds=2)
SHORT_TIMEOUT = timedelta(seconds=30)
AGENT_HEARTBEAT_TIMEOUT = timedelta(seconds=15)
CRASH_TYPES = {"AgentCrashed", "AgentSilent", "AgentHandshakeTimeout"}
# Alarms kept in the job's state (and history payloads); the count stays exact beyond it.
DOSSIER_LIMIT = 100


@workflow.defn
class AgentJobWorkflow:
    def __init__(self) -> None:
        self._state = JobState.QUEUED
        self._attempt = 1
        self._launches_this_run = 0
        self._spec: JobSpec | None = None
        self._agent_id = ""
        self._pr_url: str | None = None
        self._reason = ""
        self._history: list[str] = []
        self._dossier: list[Alarm] = []
        self._dossier_count = 0
        self._claim = JobClaim()
        self._cancel: CancelRequest | None = None
        self._retry: RetryRequest | None = None
        self._steering: list[SteerRequest] = []
        self._notes: list[str] = []
        self._progress: AgentProgress | None = None
        self._budget = JobBudget()

    @workflow.run
    async def run(self, spec: JobSpec) -> JobResult:
        self._spec = spec
        self._add_to_dossier(spec.alarms)
        workflow.upsert_search_attributes(
            [sa.JOB_KIND.value_set(spec.work.kind), sa.TICKET_KEY.value_set(spec.work.key)]
            + ([sa.AWS_ACCOUNT.value_set(spec.account)] if spec.account else [])
        )
        try:
            spec = self._spec = await self._routed(spec)
        except JobEnded as ended:
            await self._end(ended)
            raise ended.error() from None
        workflow.upsert_search_attributes([sa.REPOSITORY.value_set(spec.route.name or spec.route.repo_url)])
        while True:
            try:
                result = await self._run_cancellable(spec)
                await self._report_to(spec.notify_workflow_id)
                await workflow.wait_condition(workflow.all_handlers_finished)
                return result
            except JobEnded as ended:
                await self._end(ended)
                await self._leave_note(spec, ended)
                if not await self._retry_requested(spec.policy):
                    await workflow.wait_condition(workflow.all_handlers_finished)
                    if ended.by_temporal:
                        raise asyncio.CancelledError(ended.reason) from None
                    raise ended.error() from None
            self._begin_retry()

    # -- operator signals, update and queries ---------------------------------------------------------------

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
        self._log(f"steering #{seq} from {request.by}")
        running = self._state == JobState.RUNNING
        await workflow.execute_activity_method(
            SteeringMailbox.deliver_steering,
            DeliverSteeringInput(job_id=self._spec.job_id, seq=seq, text=request.text, by=request.by),
            **self._short(),
        )
        delivered = False
        if running and workflow.patched("steer-awaits-model-delivery"):
            # A coding CLI's next model request carries it (model_gateway/steering.py); bounded by config.
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

    @steer.validator
    def _steerable(self, request: SteerRequest) -> None:
        if self._spec is None or self._state in TERMINAL:
            raise ValueError(f"job is {self._state}: only a queued or running job can be steered")

    @workflow.signal
    def claim_granted(self, grant: ClaimGranted) -> None:
        self._claim.on_granted(grant)

    @workflow.signal
    def progress(self, progress: AgentProgress) -> None:
        """The result watcher's relay of the agent's step states and last log lines."""
        self._progress = progress

    @workflow.signal
    async def budget_exceeded(self, request: BudgetExceeded) -> None:
        """From the model gateway, which now holds the agent's next model request: wait for an operator."""
        if self._state != JobState.RUNNING or not self._budget.exceeded(request, self._attempt):
            return
        self._log(f"token budget spent: attempt {request.attempt} used {request.used_tokens} tokens")
        self._set_state(JobState.AWAITING_APPROVAL)
        window = self._spec.policy.approval_window_seconds
        try:
            await workflow.wait_condition(
                lambda: not self._budget.awaiting or self._state != JobState.AWAITING_APPROVAL,
                timeout=timedelta(seconds=window),
            )
        except TimeoutError:
            self._budget.expire(window)

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
            notes=list(self._notes),
            progress=self._progress,
        )

    # -- the job ---------------------------------------------------------------------------------------------

    async def _routed(self, spec: JobSpec) -> JobSpec:
        """Tickets come routed; an incident finds its repository (and its kind's policy) by account."""
        if spec.route is not None:
            return spec.model_copy(update={"policy": spec.policy or JobPolicy()})
        try:
            routed = await workflow.execute_activity_method(
                Router.route_incident,
                RouteIncidentInput(account=spec.account),
                start_to_close_timeout=SHORT_TIMEOUT,
                retry_policy=RetryPolicy(maximum_attempts=5, maximum_interval=timedelta(seconds=10)),
            )
        except ActivityError as err:
            cause = err.cause
            raise JobEnded(
                JobState.FAILED, cause.message if isinstance(cause, ApplicationError) else str(err)
            ) from err
        return spec.model_copy(update={"route": routed.route, "policy": routed.policy})

    async def _run_cancellable(self, spec: JobSpec) -> JobResult:
        """Run the job; a `cancel` signal or a Temporal cancellation stops it wherever it is."""
        body = asyncio.create_task(self._run_once(spec))
        try:
            await workflow.wait_condition(
                lambda: body.done() or self._cancel is not None or bool(self._budget.ended)
            )
        except asyncio.CancelledError:
            self._cancel = CancelRequest(by="temporal", reason="workflow cancellation requested")
            await self._stop(body)
            raise JobEnded(JobState.CANCELLED, "cancelled through Temporal", by_temporal=True) from None
        if not body.done() and self._budget.ended:
            # The model gateway answers the held request first (it polls every 0.25 s), so the agent's CLI
            # reports the refusal before it is stopped.
            await workflow.sleep(BUDGET_ANSWER_GRACE)
            await self._stop(body)
            raise JobEnded(JobState.FAILED, self._budget.ended)
        if not body.done():
            await self._stop(body)
            request = self._cancel
            raise JobEnded(
                JobState.CANCELLED, f"cancelled by {request.by}: {request.reason or 'no reason given'}"
            )
        return body.result()

    async def _stop(self, body: asyncio.Task) -> None:
        body.cancel()  # its `finally` blocks stop the agent and release the claim
        try:
            await body
        except (asyncio.CancelledError, JobEnded):
            pass

    async def _run_once(self, spec: JobSpec) -> JobResult:
        """Wait for the repository, run the agent (relaunching a lost one), publish; always release."""
        self._set_state(JobState.QUEUED)
        try:
            await self._claim.acquire(spec.route, self._retry_policy())
            result = await self._run_agent(spec)
            if result.status != AgentStatus.SUCCEEDED and result.no_changes:
                raise JobEnded(
                    JobState.NO_CHANGES, result.summary or "the agent changed nothing", result=result
                )
            if result.status != AgentStatus.SUCCEEDED:
                raise JobEnded(
                    JobState.FAILED,
                    f"agent reported {result.failure_class} failure: "
                    f"{result.summary or 'no summary'} (exit code {result.exit_code})",
                    result=result,
                )
            self._set_state(JobState.PUBLISHING)
            published = await self._publish(spec, result)
        finally:
            await self._claim.release()
        self._pr_url = published.pr_url
        self._set_state(JobState.SUCCEEDED)
        return JobResult(
            job_id=spec.job_id,
            state=self._state,
            attempt=self._attempt,
            branch=published.branch,
            commit_sha=published.commit_sha,
            pr_url=published.pr_url,
            summary=result.summary,
            agent=result,
        )

    async def _run_agent(self, spec: JobSpec) -> AgentResult:
        while True:
            self._launches_this_run += 1
            try:
                return await self._run_attempt(spec)
            except AgentLost as lost:
                # A crashed, silent or never-connecting agent is relaunched as a new attempt with a new
                # token (the gateway refuses the old one from then on), a bounded number of times.
                limit = spec.policy.max_agent_attempts
                if self._launches_this_run >= limit:
                    raise JobEnded(
                        JobState.CRASHED, f"{lost} (attempt {self._launches_this_run} of {limit})"
                    ) from None
                self._log(f"CRASHED attempt {self._attempt}: {lost}")
                self._attempt += 1

    async def _run_attempt(self, spec: JobSpec) -> AgentResult:
        """One agent attempt: stage its files, launch it, await its result, and always stop it."""
        self._set_state(JobState.LAUNCHING)
        self._progress = None
        self._budget.start_attempt(spec.policy.token_budget)
        await workflow.execute_activity_method(
            TaskFileStager.stage_task_files,
            StageTaskFilesInput(
                spec=spec.model_copy(update={"alarms": self._dossier}), attempt=self._attempt
            ),
            **self._short(),
        )
        agent = await workflow.execute_activity_method(
            LocalLauncher.launch_agent,
            LaunchAgentInput(job_id=spec.job_id, attempt=self._attempt, agent_image=spec.route.agent_image),
            **self._short(),
        )
        self._agent_id = agent.agent_id
        if agent.sandbox == "unsafe":
            self._log(f"UNSANDBOXED agent {agent.agent_id}: CONDUCTOR_SANDBOX=unsafe")
        on_host = self._on_launching_host(spec, agent)
        try:
            self._set_state(JobState.RUNNING)
            return await self._await_result(spec, agent, on_host)
        finally:
            # Orphan kill on every exit path: success, failure, crash, timeout, cancel.
            try:
                await workflow.execute_activity_method(
                    LocalLauncher.stop_agent,
                    StopAgentInput(job_id=spec.job_id, attempt=self._attempt, agent_id=agent.agent_id),
                    **self._short(),
                    **on_host,
                )
            except ActivityError as err:
                if not _never_started(err):
                    raise
                self._log(f"launching conductor gone: agent {agent.agent_id} went with it")

    def _on_launching_host(self, spec: JobSpec, agent: LaunchAgentResult) -> dict:
        """Where the agent's watch and stop run: the launching conductor's own queue for a local agent
        (only its host sees the process), any replica for Fargate. A conductor that does not take them
        within the policy's time is gone, with its agents."""
        if not agent.host_task_queue or not workflow.patched("agent-watched-on-launching-host"):
            return {}
        return dict(
            task_queue=agent.host_task_queue,
            schedule_to_start_timeout=timedelta(seconds=spec.policy.launching_host_timeout_seconds),
        )

    async def _await_result(
        self, spec: JobSpec, agent: LaunchAgentResult, on_host: dict | None = None
    ) -> AgentResult:
        timeout = spec.policy.agent_timeout_seconds
        try:
            result = await workflow.execute_activity_method(
                AgentResultWatcher.await_agent_result,
                AwaitAgentInput(job_id=spec.job_id, attempt=self._attempt, agent_id=agent.agent_id),
                # The agent's time limit covers every watcher attempt, not each one.
                schedule_to_close_timeout=timedelta(seconds=timeout),
                heartbeat_timeout=AGENT_HEARTBEAT_TIMEOUT,
                # The watcher moves to another conductor process on every deploy (ConductorDraining) or crash
                # while the agent keeps working; the job's own timeout bounds the whole wait.
                retry_policy=RetryPolicy(maximum_attempts=20, maximum_interval=timedelta(seconds=5)),
                **(on_host or {}),
            )
        except ActivityError as err:
            cause = err.cause
            if _never_started(err):
                raise AgentLost(
                    f"launching conductor ({on_host['task_queue']}) did not take the agent's watch within "
                    f"{spec.policy.launching_host_timeout_seconds}s: it is gone, and its agent with it"
                ) from err
            if isinstance(cause, TemporalTimeoutError):
                raise JobEnded(
                    JobState.TIMED_OUT, f"agent did not finish within {timeout}s ({cause.type.name})"
                ) from err
            if isinstance(cause, ApplicationError) and cause.type in CRASH_TYPES:
                raise AgentLost(cause.message) from err
            raise JobEnded(JobState.FAILED, f"waiting for the agent failed: {cause or err}") from err
        if result.model_usage is not None:
            # The final count, which the last progress relay may have missed: `status` keeps showing it.
            progress = self._progress or AgentProgress()
            self._progress = progress.model_copy(update={"model_usage": result.model_usage})
        return result

    async def _publish(self, spec: JobSpec, result: AgentResult) -> PublishResult:
        publisher = (
            GithubPublisher.publish_github
            if spec.route.publisher == "github"
            else LocalGitPublisher.publish_local
        )
        try:
            return await workflow.execute_activity_method(
                publisher,
                PublishInput(spec=spec, result=result),
                start_to_close_timeout=timedelta(minutes=10),
                # Publishers heartbeat while pushing: a conductor killed mid-push is noticed in 20 s.
                heartbeat_timeout=timedelta(seconds=20),
                retry_policy=RetryPolicy(
                    maximum_attempts=spec.policy.publish_max_attempts, maximum_interval=timedelta(seconds=30)
                ),
            )
        except ActivityError as err:
            raise JobEnded(JobState.FAILED, f"publishing failed: {err.cause or err}", result=result) from err

    # -- endings and retries -----------------------------------------------------------------------------------

    async def _end(self, ended: JobEnded) -> None:
        self._reason = ended.reason
        self._set_state(ended.state)
        await self._report_to(self._spec.notify_workflow_id)

    async def _leave_note(self, spec: JobSpec, ended: JobEnded) -> None:
        """A note with the agent's report on the ticket and the PR; a note that fails does not fail the job."""
        note = FailureNoteInput(
            spec=spec,
            attempt=self._attempt,
            state=ended.state,
            reason=ended.reason,
            result=ended.result,
            by=self._cancel.by if self._cancel else "",
        )
        try:
            left = await workflow.execute_activity_method(
                FailureNotes.leave_failure_note, note, **self._short()
            )
            self._notes += left.left_at
        except ActivityError as err:
            self._log(f"could not leave a note: {err.cause or err}")

    async def _retry_requested(self, policy: JobPolicy) -> bool:
        """Wait up to the policy's window for `retry`; a `cancel` now closes the job at once."""
        if self._cancel is not None and self._cancel.by == "temporal":
            return False
        self._retry, cancel_before = None, self._cancel
        try:
            await workflow.wait_condition(
                lambda: self._retry is not None or self._cancel is not cancel_before,
                timeout=timedelta(seconds=policy.retry_window_seconds),
            )
        except TimeoutError:
            return False
        return self._retry is not None

    def _begin_retry(self) -> None:
        request = self._retry
        self._log(f"RETRY requested by {request.by}: {request.reason or 'no reason given'}")
        self._attempt += 1
        self._launches_this_run = 0
        self._cancel = self._retry = None
        self._reason = ""

    async def _report_to(self, workflow_id: str) -> None:
        """Tell the incident chain how its job ended, so its failed-job policy can act."""
        if not workflow_id or self._spec is None:
            return
        state = self._state if self._state in TERMINAL else JobState.FAILED
        finished = JobFinished(
            chain_id=self._spec.chain_id, job_id=self._spec.job_id, state=state, reason=self._reason
        )
        try:
            await workflow.get_external_workflow_handle(workflow_id).signal("job_finished", finished)
        except FailureError as err:  # the account workflow may have ended (idle); nothing waits for us then
            workflow.logger.info("could not report to %s: %s", workflow_id, err)

    # -- bookkeeping ------------------------------------------------------------------------------------------

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
        workflow.upsert_search_attributes([sa.JOB_STATE.value_set(state.value)])
        workflow.set_current_details(details_markdown(self.status(), self._spec))


def _never_started(err: ActivityError) -> bool:
    """No worker of the queue took the activity in time: on a launching host's queue, the host is gone."""
    cause = err.cause
    return isinstance(cause, TemporalTimeoutError) and cause.type == TimeoutType.SCHEDULE_TO_START
