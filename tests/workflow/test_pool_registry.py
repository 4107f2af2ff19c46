"""The pool's agent registry is bounded: 13,500 registrations (the count that once pushed the pool's
continue-as-new state past 2 MiB and failed every workflow task for good) end in refusals past the bound,
the pool keeps serving, and no workflow task fails in any of its runs."""

import asyncio
import time
import uuid
from datetime import timedelta

import pytest
from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause
from temporalio.client import WorkflowUpdateFailedError

from conductor_worker.pool_api.pool_calls import PoolCalls, RegistryFull
from contracts.pool import (
    MAX_POOL_AGENTS,
    REGISTRY_BYTES_LIMIT,
    AgentRegistration,
    PoolState,
    ScriptResult,
    ScriptTask,
    ScriptTaskInput,
    pool_workflow_id,
    script_workflow_id,
)
from tests.helpers import wait_for
from workflows.agent_pool import AGENT_EVICTABLE_AFTER, AgentPoolWorkflow
from workflows.script_task import ScriptTaskWorkflow

REGISTRATIONS = 13_500
AT_ONCE = 200


def registration(n: int) -> AgentRegistration:
    """As `conductor-agent pool` registers after each restart: a new `<host>-<pid>` every time."""
    return AgentRegistration(agent_id=f"build-host-{n}", instance_id=f"i-{n:08x}", capabilities=["shell"])


async def register(pool, n: int) -> str:
    """ "ok", or the refusal's error type."""
    try:
        await pool.execute_update(AgentPoolWorkflow.register_agent, registration(n))
        return "ok"
    except WorkflowUpdateFailedError as err:
        return err.cause.type


async def failed_workflow_tasks_in_every_run(
    client, workflow_id: str, first_run_id: str
) -> tuple[int, list[str]]:
    """(runs, WorkflowTaskFailed events caused by the workflow), following the continue-as-new chain.

    Left out: UNHANDLED_COMMAND. The server records it when messages arrive while a run is completing
    (here: registrations during a continue-as-new); it hands the workflow a new task with them at once, so
    nothing is stuck. A failure of the workflow's own code (an exception, a payload over the limit, the
    deadlock detector) has any other cause.
    """
    runs, failed, run_id = 0, [], first_run_id
    while run_id:
        runs += 1
        next_run = ""
        async for event in client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history_events():
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
                attrs = event.workflow_task_failed_event_attributes
                if attrs.cause != WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND:
                    failed.append(
                        f"{WorkflowTaskFailedCause.Name(attrs.cause)}: {attrs.failure.message}"[:300]
                    )
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
                next_run = event.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
        run_id = next_run
    return runs, failed


async def registered(pool) -> int:
    return len((await pool.query(AgentPoolWorkflow.status)).agents)


@pytest.mark.timeout(90)
async def test_13500_registrations_through_the_rest_calls_are_bounded_and_wedge_nothing(
    ts_env, task_queue, pool_worker
):
    """The measured case: 13,500 agent ids registering, as the REST API registers them (PoolCalls).
    The first MAX_POOL_AGENTS are registered, every other is refused with the reason, the pool's state
    stays small, the pool keeps serving, and no workflow task fails in any of its runs."""
    client = ts_env.client
    calls = PoolCalls(client, task_queue)
    began = time.monotonic()
    outcomes: list[str] = []
    for start in range(0, REGISTRATIONS, AT_ONCE):
        end = min(start + AT_ONCE, REGISTRATIONS)
        outcomes += await asyncio.gather(*(rest_register(calls, n) for n in range(start, end)))
    elapsed = time.monotonic() - began
    assert outcomes.count("ok") == MAX_POOL_AGENTS
    refusals = [o for o in outcomes if o != "ok"]
    assert len(refusals) == REGISTRATIONS - MAX_POOL_AGENTS
    assert all(r.startswith(f"the pool registry is full ({MAX_POOL_AGENTS} agents") for r in refusals)

    pool = client.get_workflow_handle(pool_workflow_id(task_queue))
    status = await pool.query(AgentPoolWorkflow.status)
    assert len(status.agents) == MAX_POOL_AGENTS
    state_bytes = len(PoolState(agents=status.agents).model_dump_json())
    assert state_bytes < REGISTRY_BYTES_LIMIT  # far below Temporal's 2 MB payload limit

    # The pool still serves: a script is submitted, claimed and assigned.
    task = ScriptTask(task_id=uuid.uuid4().hex, script="true", timeout_seconds=60)
    script = await client.start_workflow(
        ScriptTaskWorkflow.run,
        ScriptTaskInput(task=task),
        id=script_workflow_id(task.task_id),
        task_queue=task_queue,
        result_type=ScriptResult,
    )

    async def claimed():
        return await calls.claim("build-host-0", ["shell"])

    assert (await wait_for(claimed, timeout=30)).task_id == task.task_id
    await script.cancel()

    first_run = (await pool.describe()).raw_description.workflow_execution_info.first_run_id
    runs, failed = await failed_workflow_tasks_in_every_run(client, pool.id, first_run)
    assert failed == []
    print(f"{REGISTRATIONS} registrations in {elapsed:.1f} s: {runs} pool runs, registry {state_bytes} bytes")


async def rest_register(calls: PoolCalls, n: int) -> str:
    """ "ok", or the refusal the REST API answers 503 with."""
    try:
        await calls.register(registration(n))
        return "ok"
    except RegistryFull as err:
        return err.message


@pytest.mark.timeout(60)
async def test_a_full_registry_refuses_a_new_agent_clearly_until_silent_agents_are_forgotten(
    ts_env, task_queue, pool_worker
):
    """The REST API's `register_agent` update: past the bound, a refusal with the reason (the REST API
    answers 503 with it), and room again once agents have been silent for AGENT_EVICTABLE_AFTER."""
    client = ts_env.client
    pool = await client.start_workflow(
        AgentPoolWorkflow.run, PoolState(), id=pool_workflow_id(task_queue), task_queue=task_queue
    )
    total = MAX_POOL_AGENTS + 100
    outcomes: list[str] = []
    for start in range(0, total, AT_ONCE):
        end = min(start + AT_ONCE, total)
        outcomes += await asyncio.gather(*(register(pool, n) for n in range(start, end)))
    assert outcomes.count("ok") == MAX_POOL_AGENTS
    assert outcomes.count("RegistryFull") == 100
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await pool.execute_update(AgentPoolWorkflow.register_agent, registration(total))
    assert refused.value.cause.message.startswith(f"the pool registry is full ({MAX_POOL_AGENTS} agents")
    assert "register again later" in refused.value.cause.message
    # A registered agent registering again (a new token) is not a new entry: it is never refused.
    assert await register(pool, 0) == "ok"
    assert await registered(pool) == MAX_POOL_AGENTS

    await ts_env.sleep(AGENT_EVICTABLE_AFTER + timedelta(minutes=1))
    assert await register(pool, total + 1) == "ok"
    status = await pool.query(AgentPoolWorkflow.status)
    assert list(status.agents) == [registration(total + 1).agent_id]  # the silent ones were forgotten
    _, failed = await failed_workflow_tasks_in_every_run(client, pool.id, pool.result_run_id)
    assert failed == []
