"""One agent job: route (incidents), stage task files, launch a sandboxed agent, await it, publish."""

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutError

with workflow.unsafe.imports_passed_through():
    from activities.agent_results import AgentResultWatcher
    from activities.launch_local import LocalLauncher
    from activities.publish_git import LocalGitPublisher
    from activities.publish_github import GithubPublisher
    from activities.routing import Router
    from activities.task_files import TaskFileStager
    from contracts import search_attributes as sa
    from contracts.activity_io import (
        AwaitAgentInput,
        LaunchAgentInput,
        LaunchAgentResult,
        PublishInput,
        PublishResult,
        RouteIncidentInput,
        StageTaskFilesInput,
        StopAgentInput,
    )
    from contracts.alarms import Alarm, AlarmBatch
    from contracts.incidents import JobFinished
    from contracts.jobs import AgentResult, AgentStatus, JobResult, JobSpec, JobState, JobStatus
    from contracts.routing import RepoRoute

# Quick local side effects: retried a few times, then the job fails with the activity's reason. The timeout
# is also how long a conductor that died mid-call delays the job before the retry runs elsewhere.
SHORT = dict(
    start_to_close_timeout=timedelta(seconds=30),
    retry_policy=RetryPolicy(maximum_attempts=5, maximum_interval=timedelta(seconds=10)),
)
AGENT_HEARTBEAT_TIMEOUT = timedelta(seconds=15)
CRASH_TYPES = {"AgentCrashed", "AgentSilent", "AgentHandshakeTimeout"}
# Alarms kept in the job's state (and history payloads); the count stays exact beyond it.
DOSSIER_LIMIT = 100


@workflow.defn
class AgentJobWorkflow:
    def __init__(self) -> None:
        self._state = JobState.QUEUED
        self._attempt = 1
        self._spec: JobSpec | None = None
        self._agent_id = ""
        self._pr_url: str | None = None
        self._reason = ""
        self._history: list[str] = []
        self._dossier: list[Alarm] = []
        self._dossier_count = 0

    @workflow.run
    async def run(self, spec: JobSpec) -> JobResult:
        self._spec = spec
        self._add_to_dossier(spec.alarms)
        workflow.upsert_search_attributes(
            [sa.JOB_KIND.value_set(spec.work.kind), sa.TICKET_KEY.value_set(spec.work.key)]
            + ([sa.AWS_ACCOUNT.value_set(spec.account)] if spec.account else [])
        )
        try:
            route = spec.route or await self._route_incident(spec.account)
            spec = self._spec = spec.model_copy(update={"route": route})
            workflow.upsert_search_attributes([sa.REPOSITORY.value_set(route.name or route.repo_url)])
            return await self._run_agent(spec)
        finally:
            await self._report_to(spec.notify_workflow_id)

    async def _run_agent(self, spec: JobSpec) -> JobResult:
        while True:
            try:
                result = await self._run_attempt(spec)
                break
            except _AgentLost as lost:
                # A crashed, silent or never-connecting agent is relaunched as a new attempt with a new
                # token (the gateway refuses the old one from then on), a bounded number of times.
                if self._attempt >= spec.max_agent_attempts:
                    self._fail(
                        JobState.CRASHED, f"{lost} (attempt {self._attempt} of {spec.max_agent_attempts})"
                    )
                self._history.append(f"{workflow.now().isoformat()} CRASHED attempt {self._attempt}: {lost}")
                self._attempt += 1
        if result.status != AgentStatus.SUCCEEDED:
            self._fail(
                JobState.FAILED,
                f"agent reported {result.failure_class} failure: "
                f"{result.summary or 'no summary'} (exit code {result.exit_code})",
            )
        self._set_state(JobState.PUBLISHING)
        published = await self._publish(spec, result)
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

    @workflow.signal
    def add_alarms(self, batch: AlarmBatch) -> None:
        """Later alarms of this job's incident chain: extra context for the running job."""
        self._add_to_dossier(batch.alarms)

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
        )

    async def _route_incident(self, account: str) -> RepoRoute:
        try:
            routed = await workflow.execute_activity_method(
                Router.route_incident, RouteIncidentInput(account=account), **SHORT
            )
        except ActivityError as err:
            cause = err.cause
            self._fail(JobState.FAILED, cause.message if isinstance(cause, ApplicationError) else str(err))
        return routed.route

    async def _run_attempt(self, spec: JobSpec) -> AgentResult:
        """One agent attempt: stage its files, launch it, await its result, and always stop it."""
        self._set_state(JobState.LAUNCHING)
        await workflow.execute_activity_method(
            TaskFileStager.stage_task_files,
            StageTaskFilesInput(
                spec=spec.model_copy(update={"alarms": self._dossier}), attempt=self._attempt
            ),
            **SHORT,
        )
        agent = await workflow.execute_activity_method(
            LocalLauncher.launch_agent, LaunchAgentInput(job_id=spec.job_id, attempt=self._attempt), **SHORT
        )
        self._agent_id = agent.agent_id
        try:
            self._set_state(JobState.RUNNING)
            return await self._await_result(spec, agent)
        finally:
            # Orphan kill on every exit path: success, failure, crash, timeout, cancel.
            await workflow.execute_activity_method(
                LocalLauncher.stop_agent,
                StopAgentInput(job_id=spec.job_id, attempt=self._attempt, agent_id=agent.agent_id),
                **SHORT,
            )

    async def _await_result(self, spec: JobSpec, agent: LaunchAgentResult) -> AgentResult:
        try:
            return await workflow.execute_activity_method(
                AgentResultWatcher.await_agent_result,
                AwaitAgentInput(job_id=spec.job_id, attempt=self._attempt, agent_id=agent.agent_id),
                start_to_close_timeout=timedelta(seconds=spec.agent_timeout_seconds),
                heartbeat_timeout=AGENT_HEARTBEAT_TIMEOUT,
                # The watcher moves to another conductor process on every deploy (ConductorDraining) or crash
                # while the agent keeps working; the job's own timeout bounds the whole wait.
                retry_policy=RetryPolicy(maximum_attempts=20, maximum_interval=timedelta(seconds=5)),
            )
        except ActivityError as err:
            cause = err.cause
            if isinstance(cause, TimeoutError):
                self._fail(
                    JobState.TIMED_OUT,
                    f"agent did not finish within {spec.agent_timeout_seconds}s ({cause.type.name})",
                )
            if isinstance(cause, ApplicationError) and cause.type in CRASH_TYPES:
                raise _AgentLost(cause.message) from err
            raise

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
                retry_policy=RetryPolicy(maximum_attempts=5, maximum_interval=timedelta(seconds=30)),
            )
        except ActivityError as err:
            self._fail(JobState.FAILED, f"publishing failed: {err.cause or err}")

    async def _report_to(self, workflow_id: str) -> None:
        """Tell the incident chain how its job ended, so its failed-job policy can act."""
        if not workflow_id or self._spec is None:
            return
        state = self._state if self._state in _TERMINAL else JobState.FAILED
        finished = JobFinished(
            chain_id=self._spec.chain_id, job_id=self._spec.job_id, state=state, reason=self._reason
        )
        try:
            await workflow.get_external_workflow_handle(workflow_id).signal("job_finished", finished)
        except Exception as err:  # the account workflow may have ended (idle); nothing waits for us then
            workflow.logger.info("could not report to %s: %s", workflow_id, err)

    def _add_to_dossier(self, alarms: list[Alarm]) -> None:
        self._dossier_count += len(alarms)
        self._dossier = (self._dossier + alarms)[-DOSSIER_LIMIT:]

    def _set_state(self, state: JobState) -> None:
        self._state = state
        self._history.append(f"{workflow.now().isoformat()} {state}")
        workflow.upsert_search_attributes([sa.JOB_STATE.value_set(state.value)])
        workflow.set_current_details(self._details())

    def _details(self) -> str:
        """The Web UI's "current details": where the job is, in a few lines of markdown."""
        spec = self._spec
        lines = [f"**{self._state}** (attempt {self._attempt})"]
        if spec is not None:
            lines.append(f"{spec.work.kind} `{spec.work.key}`: {spec.work.summary}")
            if spec.route is not None:
                lines.append(f"repository `{spec.route.name or spec.route.repo_url}`, branch `{spec.branch}`")
        if self._agent_id:
            lines.append(f"agent `{self._agent_id}`")
        if self._dossier_count:
            lines.append(f"{self._dossier_count} alarm(s) in the dossier")
        if self._pr_url:
            lines.append(f"pull request: {self._pr_url}")
        if self._reason:
            lines.append(f"reason: {self._reason}")
        return "\n\n".join(lines)

    def _fail(self, state: JobState, reason: str):
        """Record the terminal state and fail the workflow with a reason a person can read."""
        self._reason = reason
        self._set_state(state)
        raise ApplicationError(f"{state}: {reason}", type=state.value, non_retryable=True)


class _AgentLost(Exception):
    """The agent crashed, fell silent or never handshook: the job may relaunch it."""


_TERMINAL = {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.CRASHED, JobState.TIMED_OUT}
