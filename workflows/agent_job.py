"""One agent job: route (incidents), claim the repository, stage task files, launch an agent, await it,
publish. A failed or cancelled job leaves a note, then waits for an operator's `retry` for a while.
"""

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutType
from temporalio.exceptions import TimeoutError as TemporalTimeoutError

with workflow.unsafe.imports_passed_through():
    from activities import launcher
    from activities.agent_results import AgentResultWatcher
    from activities.publish_git import LocalGitPublisher
    from activities.publish_github import GithubPublisher
    from activities.routing import Router
    from activities.task_files import TaskFileStager
    from contracts import search_attributes as sa
    from contracts.activity_io import (
        AwaitAgentInput,
        FailureNoteInput,
        LaunchAgentInput,
        LaunchAgentResult,
        PublishInput,
        PublishResult,
        RouteIncidentInput,
        StageTaskFilesInput,
        StopAgentInput,
        agent_watch_activity_id,
    )
    from contracts.jobs import (
        AgentProgress,
        AgentResult,
        AgentStatus,
        JobResult,
        JobSpec,
        JobState,
    )
    from contracts.operator import (
        CancelRequest,
    )
    from contracts.policies import JobPolicy
    from contracts.status import ACCEPTED, PR_OPENED
    from workflows.job_operations import SHORT_TIMEOUT, JobOperations
    from workflows.job_outcomes import AgentLost, JobEnded
    from workflows.job_status import agent_report

# How long a refused budget's held request gets to be answered before the agent is stopped.
BUDGET_ANSWER_GRACE = timedelta(seconds=2)
AGENT_HEARTBEAT_TIMEOUT = timedelta(seconds=15)
CRASH_TYPES = {"AgentCrashed", "AgentSilent", "AgentHandshakeTimeout"}


@workflow.defn
class AgentJobWorkflow(JobOperations):
    """The job's run; its state and operator handlers are in JobOperations (workflows/job_operations.py)."""

    @workflow.run
    async def run(self, spec: JobSpec) -> JobResult:
        self._spec = spec
        self._status_comment.start(spec)
        self._post_status(ACCEPTED)
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
                await self._finish()
                return result
            except JobEnded as ended:
                await self._end(ended)
                await self._leave_note(spec, ended)
                if not await self._retry_requested(spec.policy):
                    await self._finish()
                    if ended.by_temporal:
                        raise asyncio.CancelledError(ended.reason) from None
                    raise ended.error() from None
            self._begin_retry()

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
            await self._claim.acquire(
                spec.route,
                self._retry_policy(),
                lambda: self._post_status("QUEUED", claim_workflow_id=self._claim.workflow_id),
            )
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
        except GeneratorExit:
            self._dropped = True
            raise
        finally:
            if not self._dropped:
                await self._claim.release()
        self._pr_url = published.pr_url
        if self._pr_url:
            self._post_status(PR_OPENED, pr_url=self._pr_url)
        self._agent_report = agent_report(result)
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
                self._count_lost_agent()
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
        self._watch_id = ""
        self._budget.start_attempt(spec.policy.token_budget, spec.policy.cost_budget_usd)
        await workflow.execute_activity_method(
            TaskFileStager.stage_task_files,
            StageTaskFilesInput(
                spec=spec.model_copy(update={"alarms": self._dossier}), attempt=self._attempt
            ),
            **self._short(),
        )
        agent = await workflow.execute_activity(
            launcher.launch_agent,
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
        except GeneratorExit:
            self._dropped = True
            raise
        finally:
            # Orphan kill on every exit path: success, failure, crash, timeout, cancel.
            if not self._dropped:
                await self._stop_agent(spec, agent, on_host)

    async def _stop_agent(self, spec: JobSpec, agent: LaunchAgentResult, on_host: dict) -> None:
        try:
            await workflow.execute_activity(
                launcher.stop_agent,
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
        if workflow.patched("agent-channel-through-temporal"):
            # The gateway completes it by this id (activities/agent_results.py); each heartbeat timeout
            # retries it, and the job's own timeout bounds the whole wait.
            self._watch_id = agent_watch_activity_id(self._attempt)
            watch = dict(
                activity_id=self._watch_id,
                heartbeat_timeout=timedelta(seconds=agent.heartbeat_timeout_seconds)
                if agent.heartbeat_timeout_seconds
                else AGENT_HEARTBEAT_TIMEOUT,
                retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=1.0),
            )
        else:
            # The watcher moved to another conductor process on every deploy (ConductorDraining) or crash
            # while the agent kept working.
            watch = dict(
                heartbeat_timeout=AGENT_HEARTBEAT_TIMEOUT,
                retry_policy=RetryPolicy(maximum_attempts=20, maximum_interval=timedelta(seconds=5)),
            )
        try:
            result = await workflow.execute_activity_method(
                AgentResultWatcher.await_agent_result,
                AwaitAgentInput(job_id=spec.job_id, attempt=self._attempt, agent_id=agent.agent_id),
                # The agent's time limit covers every watcher attempt, not each one.
                schedule_to_close_timeout=timedelta(seconds=timeout),
                **watch,
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
        self._agent_report = agent_report(ended.result)
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
        await self._post_note(note)

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


def _never_started(err: ActivityError) -> bool:
    """No worker of the queue took the activity in time: on a launching host's queue, the host is gone."""
    cause = err.cause
    return isinstance(cause, TemporalTimeoutError) and cause.type == TimeoutType.SCHEDULE_TO_START
