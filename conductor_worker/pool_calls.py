"""The REST API's Temporal calls, and what each Temporal outcome means to a pool agent.

The conductor keeps no dispatch state: registration is a signal-with-start of the pool workflow, a poll
is its `claim` update, a report is the script workflow's `report` update. So any conductor process on
the task queue serves any agent, and one that dies loses nothing.
"""

from datetime import timedelta

from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from contracts.pool import (
    AgentRegistration,
    AgentReport,
    Claim,
    PoolState,
    ReportAck,
    ReportStatus,
    ScriptTask,
    TaskReport,
    pool_workflow_id,
    script_workflow_id,
)

# Short: an agent whose call times out moves on to its next conductor URL.
RPC_TIMEOUT = timedelta(seconds=10)


class PoolCallError(Exception):
    """A refusal the agent must see: `status` is the HTTP status the REST API answers with."""

    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotYourTask(PoolCallError):
    status = 403


class UnknownTask(PoolCallError):
    status = 404


class TaskFinished(PoolCallError):
    """The task ended (a result or a timeout): the agent stops working on it."""

    status = 409


_REJECTIONS = {"NotYourTask": NotYourTask, "TaskFinished": TaskFinished}


class PoolCalls:
    def __init__(self, client: Client, task_queue: str) -> None:
        self._client = client
        self._task_queue = task_queue
        self._pool_id = pool_workflow_id(task_queue)

    async def register(self, registration: AgentRegistration) -> None:
        await self._client.start_workflow(
            "AgentPoolWorkflow",
            PoolState(),
            id=self._pool_id,
            task_queue=self._task_queue,
            start_signal="register",
            start_signal_args=[registration],
            rpc_timeout=RPC_TIMEOUT,
        )

    async def claim(self, agent_id: str, capabilities: list[str]) -> ScriptTask | None:
        """The oldest task for these capabilities, now assigned to the agent; None when there is none."""
        handle = self._client.get_workflow_handle(self._pool_id)
        try:
            return await handle.execute_update(
                "claim",
                Claim(agent_id=agent_id, capabilities=capabilities),
                result_type=ScriptTask,
                rpc_timeout=RPC_TIMEOUT,
            )
        except WorkflowUpdateFailedError as err:
            if _error_type(err) == "NoTask":  # the validator's rejection: nothing was written
                return None
            raise
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:  # no pool yet: no task was ever submitted
                return None
            raise

    async def report(self, task_id: str, agent_id: str, report: TaskReport) -> ReportAck:
        handle = self._client.get_workflow_handle(script_workflow_id(task_id))
        final = report.status != ReportStatus.RUNNING
        try:
            return await handle.execute_update(
                "report",
                AgentReport(agent_id=agent_id, report=report),
                result_type=ReportAck,
                # A final report repeated after a lost reply gets the recorded answer, even once the
                # workflow has closed on it.
                id=f"final/{agent_id}" if final else None,
                rpc_timeout=RPC_TIMEOUT,
            )
        except WorkflowUpdateFailedError as err:
            rejection = _REJECTIONS.get(_error_type(err))
            if rejection is None:
                raise
            raise rejection(str(err.cause.message)) from err
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            if await self._exists(handle):
                raise TaskFinished(f"task {task_id} is already finished") from err
            raise UnknownTask(f"no task {task_id}") from err

    @staticmethod
    async def _exists(handle) -> bool:
        try:
            await handle.describe(rpc_timeout=RPC_TIMEOUT)
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return False
            raise
        return True


def _error_type(err: WorkflowUpdateFailedError) -> str:
    return getattr(err.cause, "type", "") or ""
