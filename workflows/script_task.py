"""`script/<task id>`: one script on a pool agent, from the queue to its structured result.

Submit the task to the pool → wait until an agent claims it → wait for the agent's final report while
its `running` beats extend a lease. A lease that runs out means the agent is lost: the task is queued
again as a new attempt, up to `max_attempts`, then fails with failure class `infrastructure`. A script
still unreported at its timeout (plus one lease of grace for the agent's own kill and report) ends as
timed out. Every outcome is a `ScriptResult`; the workflow itself fails only on a bug.
"""

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.pool_dispatch import submit_script_task
    from contracts.jobs import FailureClass
    from contracts.pool import (
        AgentReport,
        Assignment,
        QueuedTask,
        ReportAck,
        ReportStatus,
        ScriptProgress,
        ScriptResult,
        ScriptStatus,
        ScriptTaskInput,
        ScriptTaskStatus,
        SubmitInput,
        Withdrawal,
        pool_workflow_id,
    )
    from workflows.agent_pool import AgentPoolWorkflow

# A quick signal-with-start; a conductor that died mid-call delays the task by this timeout at most.
SUBMIT = dict(
    start_to_close_timeout=timedelta(seconds=10),
    retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=10)),
)
_FINAL_STATUS = {
    ReportStatus.COMPLETED: ScriptStatus.COMPLETED,
    ReportStatus.FAILED: ScriptStatus.FAILED,
    ReportStatus.TIMED_OUT: ScriptStatus.TIMED_OUT,
}


@workflow.defn
class ScriptTaskWorkflow:
    @workflow.init
    def __init__(self, input: ScriptTaskInput) -> None:
        self._input = input
        self._progress = input.progress or ScriptProgress()
        self._final: AgentReport | None = None
        self._final_at: datetime | None = None

    @workflow.run
    async def run(self, input: ScriptTaskInput) -> ScriptResult:
        while True:
            if not self._progress.agent_id:
                if self._progress.attempt >= input.max_attempts:
                    return self._failure(
                        FailureClass.INFRASTRUCTURE,
                        f"agents lost {input.max_attempts} time(s): " + "; ".join(self._progress.lost),
                    )
                self._progress.attempt += 1
                await workflow.execute_activity(
                    submit_script_task, SubmitInput(queued=self._queued()), **SUBMIT
                )
                if not await self._claimed():
                    await self._withdraw()
                    return self._failure(
                        FailureClass.INFRASTRUCTURE,
                        f"no agent with capability {input.task.capability!r} claimed the task "
                        f"within {input.queue_timeout_seconds:g} s",
                    )
            result = await self._await_report()
            if result is not None:
                await workflow.wait_condition(workflow.all_handlers_finished)
                return result
            self._progress.lost.append(
                f"agent {self._progress.agent_id} sent no beat for {input.lease_seconds:g} s "
                f"(attempt {self._progress.attempt})"
            )
            workflow.logger.info("requeueing task: %s", self._progress.lost[-1])
            self._progress.agent_id = ""

    @workflow.signal
    def assigned(self, assignment: Assignment) -> None:
        """From the pool's claim handler, before the agent receives the task: the lease starts now."""
        if assignment.attempt != self._progress.attempt or self._progress.agent_id or self._final:
            return  # a stale attempt's claim
        now = workflow.now()
        self._progress.agent_id = assignment.agent_id
        self._progress.claimed_at = now
        self._progress.lease_until = now + self._lease()

    @workflow.update
    def report(self, message: AgentReport) -> ReportAck:
        if message.report.status == ReportStatus.RUNNING:
            self._progress.lease_until = workflow.now() + self._lease()
        elif self._final is None:
            self._final, self._final_at = message, workflow.now()
        return ReportAck(lease_seconds=self._input.lease_seconds)

    @report.validator
    def _from_the_holder(self, message: AgentReport) -> None:
        # Raised as ApplicationError types the REST API maps to status codes (conductor_worker/pool_api/pool_calls.py).
        task_id = self._input.task.task_id
        if self._final is not None:
            repeated = (
                message.agent_id == self._final.agent_id and message.report.status != ReportStatus.RUNNING
            )
            if not repeated:
                raise _rejected(f"task {task_id} is already finished", "TaskFinished")
        elif message.agent_id != self._progress.agent_id:
            raise _rejected(f"task {task_id} is not assigned to agent {message.agent_id}", "NotYourTask")

    @workflow.query
    def status(self) -> ScriptTaskStatus:
        state = "finished" if self._final else "running" if self._progress.agent_id else "queued"
        return ScriptTaskStatus(
            task_id=self._input.task.task_id,
            state=state,
            attempt=self._progress.attempt,
            agent_id=self._progress.agent_id,
        )

    # Steps --------------------------------------------------------------------------------------

    async def _claimed(self) -> bool:
        try:
            await workflow.wait_condition(
                lambda: bool(self._progress.agent_id),
                timeout=timedelta(seconds=self._input.queue_timeout_seconds),
            )
        except TimeoutError:
            pass
        return bool(self._progress.agent_id)  # a claim that arrived with the timeout still counts

    async def _await_report(self) -> ScriptResult | None:
        """The final report's result, a timed-out result, or None when the agent's lease ran out."""
        progress = self._progress
        deadline = progress.claimed_at + timedelta(seconds=self._input.task.timeout_seconds) + self._lease()
        while self._final is None:
            now = workflow.now()
            if now >= deadline:
                return self._failure(
                    FailureClass.SCRIPT,
                    f"no result within the {self._input.task.timeout_seconds:g} s timeout",
                    status=ScriptStatus.TIMED_OUT,
                )
            if now >= progress.lease_until:
                return None
            if workflow.info().is_continue_as_new_suggested():
                # Every beat adds events; a long script carries its lease into a fresh run.
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(self._input.model_copy(update={"progress": progress}))
            try:
                await workflow.wait_condition(
                    lambda: self._final is not None, timeout=min(deadline, progress.lease_until) - now
                )
            except TimeoutError:
                pass  # a beat may have moved the lease meanwhile: the loop looks again
        return self._from_final()

    async def _withdraw(self) -> None:
        pool = workflow.get_external_workflow_handle_for(
            AgentPoolWorkflow.run, pool_workflow_id(workflow.info().task_queue)
        )
        try:
            await pool.signal(AgentPoolWorkflow.withdraw, Withdrawal(task_id=self._input.task.task_id))
        except Exception as err:  # no pool: nothing is queued there either
            workflow.logger.info("could not withdraw task from the pool: %s", err)

    # Results ------------------------------------------------------------------------------------

    def _from_final(self) -> ScriptResult:
        report = self._final.report
        status = _FINAL_STATUS[report.status]
        default_class = FailureClass.NONE if status == ScriptStatus.COMPLETED else FailureClass.SCRIPT
        duration = report.duration_seconds
        if duration is None:
            duration = (self._final_at - self._progress.claimed_at).total_seconds()
        reason = ""
        if status == ScriptStatus.FAILED:
            reason = f"script exited with code {report.exit_code}"
        elif status == ScriptStatus.TIMED_OUT:
            reason = f"script stopped at its {self._input.task.timeout_seconds:g} s timeout"
        return ScriptResult(
            task_id=self._input.task.task_id,
            agent_id=self._final.agent_id,
            status=status,
            exit_code=report.exit_code,
            stdout=report.stdout,
            stderr=report.stderr,
            duration_seconds=duration,
            failure_class=report.failure_class or default_class,
            attempts=self._progress.attempt,
            reason="; ".join([*self._progress.lost, reason] if reason else self._progress.lost),
        )

    def _failure(
        self, failure_class: FailureClass, reason: str, status: ScriptStatus = ScriptStatus.FAILED
    ) -> ScriptResult:
        return ScriptResult(
            task_id=self._input.task.task_id,
            agent_id=self._progress.agent_id,
            status=status,
            failure_class=failure_class,
            attempts=self._progress.attempt,
            reason=reason,
        )

    def _queued(self) -> QueuedTask:
        return QueuedTask(task=self._input.task, attempt=self._progress.attempt)

    def _lease(self) -> timedelta:
        return timedelta(seconds=self._input.lease_seconds)


def _rejected(message: str, error_type: str) -> ApplicationError:
    return ApplicationError(message, type=error_type, non_retryable=True)
