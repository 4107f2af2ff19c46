"""Run one script on a pool agent and wait for its structured result: the Python API of `conductor run-script`.

    result = await run_script(client, "echo hi", capability="shell", timeout=60)
    result.status, result.exit_code, result.stdout, result.failure_class

The task is a `ScriptTaskWorkflow` (`script/<task id>`); the client needs the pydantic data converter
(conductor_worker/process/client.py). A pool agent with the capability must be polling some conductor.
"""

import uuid

from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy

from contracts.jobs import FailureClass
from contracts.pool import (
    DEFAULT_LEASE_SECONDS,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_QUEUE_TIMEOUT_SECONDS,
    ScriptResult,
    ScriptStatus,
    ScriptTask,
    ScriptTaskInput,
    script_workflow_id,
)
from contracts.queues import CONDUCTOR_TASK_QUEUE
from workflows.script_task import ScriptTaskWorkflow

# `conductor run-script` exit codes besides the script's own (README "Pool agents and the REST API").
EXIT_TIMED_OUT = 124  # as timeout(1)
EXIT_NO_AGENT = 69  # sysexits EX_UNAVAILABLE: no agent took it, or agents were lost: retry later
EXIT_NO_EXIT_CODE = 1


async def run_script(
    client: Client,
    script: str,
    capability: str = "shell",
    timeout: float = 600,
    *,
    task_id: str | None = None,
    task_queue: str = CONDUCTOR_TASK_QUEUE,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    queue_timeout: float = DEFAULT_QUEUE_TIMEOUT_SECONDS,
) -> ScriptResult:
    """Queue `script` for an agent with `capability`; its result once it ran (or could not run).

    `timeout` limits the script's run; `queue_timeout` how long it may wait for an agent. A task id
    names the workflow: reusing one that is still running joins it instead of running the script twice.
    """
    task = ScriptTask(
        task_id=task_id or uuid.uuid4().hex, script=script, capability=capability, timeout_seconds=timeout
    )
    handle = await client.start_workflow(
        ScriptTaskWorkflow.run,
        ScriptTaskInput(
            task=task,
            lease_seconds=lease_seconds,
            max_attempts=max_attempts,
            queue_timeout_seconds=queue_timeout,
        ),
        id=script_workflow_id(task.task_id),
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        static_summary=f"Script ({capability}): {script.splitlines()[0] if script else ''}"[:200],
    )
    return await handle.result()


def exit_code_for(result: ScriptResult) -> int:
    """The command's exit code mirrors the result: the script's own code, or why there is none."""
    if result.status == ScriptStatus.COMPLETED:
        return 0
    if result.status == ScriptStatus.TIMED_OUT:
        return EXIT_TIMED_OUT
    if result.failure_class in (FailureClass.INFRASTRUCTURE, FailureClass.NETWORK):
        return EXIT_NO_AGENT
    code = result.exit_code
    if code is None or code == 0:
        return EXIT_NO_EXIT_CODE
    return 128 - code if code < 0 else min(code, 255)  # killed by signal N: 128+N, as shells report it


def summary_line(result: ScriptResult) -> str:
    where = f"on {result.agent_id}" if result.agent_id else "on no agent"
    code = "-" if result.exit_code is None else result.exit_code
    line = (
        f"task {result.task_id} {where}: {result.status} (exit code {code}) in "
        f"{result.duration_seconds:.2f} s, failure class {result.failure_class}, attempts {result.attempts}"
    )
    return f"{line}: {result.reason}" if result.reason else line
