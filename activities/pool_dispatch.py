"""Hand a script task to the pool workflow of this task queue, starting the pool if none runs.

The only side effect of script dispatch: claims, beats and results reach the workflows as updates
from the REST API, and no activity ever talks to an agent, so any conductor process can run this.
"""

from temporalio import activity
from temporalio.client import WithStartWorkflowOperation, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError

from contracts.pool import PoolState, SubmitInput, pool_workflow_id


@activity.defn(name="submit_script_task")
async def submit_script_task(input: SubmitInput) -> None:
    # The pool serves the queue its script workflows run on; every conductor polling it serves the pool.
    task_queue = activity.info().task_queue
    # Update-with-start; idempotent, because the pool accepts (and ignores) a task attempt it already holds
    # or handed out. A full queue refuses the update: this activity fails and its retry policy submits the
    # task again later, so the task waits in its own workflow rather than in the pool's bounded state.
    start = WithStartWorkflowOperation(
        "AgentPoolWorkflow",
        PoolState(),
        id=pool_workflow_id(task_queue),
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        static_summary="Pool agents: script tasks waiting for an agent",
    )
    try:
        await activity.client().execute_update_with_start_workflow(
            "enqueue", input, start_workflow_operation=start
        )
    except WorkflowUpdateFailedError as refused:
        message = getattr(refused.cause, "message", str(refused))
        activity.logger.info("script task %s not queued yet: %s", input.queued.task.task_id, message)
        raise ApplicationError(message, type="PoolQueueFull") from None
