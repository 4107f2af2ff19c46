"""The REST API's Temporal calls, and what each Temporal outcome means to a pool agent.

The conductor keeps no dispatch state: registration is the pool workflow's `register_agent` update (the
pool started first if need be; a full registry refuses it), a poll is its `claim` update, a report is the script workflow's `report` update. So any conductor process on
the task queue serves any agent, and one that dies loses nothing.
"""

import time
from datetime import timedelta

from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy
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
# After the pool refused a registration for a full registry, this conductor refuses new ones itself for
# this long: a storm of restarting agents then costs the pool workflow nothing (each refusal was an update).
REGISTRY_FULL_HOLD_SECONDS = 10.0


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


class RegistryFull(PoolCallError):
    """The pool's registry is at its bound: the agent should try again later (or another conductor)."""

    status = 503


class TaskFinished(PoolCallError):
    """The task ended (a result or a timeout): the agent stops working on it."""

    status = 409


_REJECTIONS = {"NotYourTask": NotYourTask, "TaskFinished": TaskFinished}


class PoolCalls:
    def __init__(self, client: Client, task_queue: str) -> None:
        self._client = client
        self._task_queue = task_queue
        self._pool_id = pool_workflow_id(task_queue)
        self._full_until = 0.0
        self._full_reason = ""

    async def register(self, registration: AgentRegistration) -> None:
        if time.monotonic() < self._full_until:
            raise RegistryFull(self._full_reason)
        await self._client.start_workflow(
            "AgentPoolWorkflow",
            PoolState(),
            id=self._pool_id,
            task_queue=self._task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            rpc_timeout=RPC_TIMEOUT,
        )
        try:
            await self._client.get_workflow_handle(self._pool_id).execute_update(
                "register_agent", registration, rpc_timeout=RPC_TIMEOUT
            )
        except WorkflowUpdateFailedError as err:
            if _error_type(err) == "RegistryFull":
                self._full_until = time.monotonic() + REGISTRY_FULL_HOLD_SECONDS
                self._full_reason = str(err.cause.message)
                raise RegistryFull(self._full_reason) from err
            raise

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
