"""Hand a script task to the pool workflow of this task queue, starting the pool if none runs.

The only side effect of script dispatch: claims, beats and results reach the workflows as updates
from the REST API, and no activity ever talks to an agent, so any conductor process can run this.
"""

from temporalio import activity

from contracts.pool import PoolState, SubmitInput, pool_workflow_id


@activity.defn(name="submit_script_task")
async def submit_script_task(input: SubmitInput) -> None:
    # The pool serves the queue its script workflows run on; every conductor polling it serves the pool.
    task_queue = activity.info().task_queue
    # Signal-with-start; idempotent, because the pool ignores a task attempt it already holds or handed out.
    await activity.client().start_workflow(
        "AgentPoolWorkflow",
        PoolState(),
        id=pool_workflow_id(task_queue),
        task_queue=task_queue,
        start_signal="submit",
        start_signal_args=[input],
        static_summary="Pool agents: script tasks waiting for an agent",
    )
