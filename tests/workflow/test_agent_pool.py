"""The pool and script-task workflows on the time-skipping server: FIFO across continue-as-new, polls
matched by capability, leases that requeue a lost agent's task and then fail it, and timeouts.

Polls and reports are sent as the REST API sends them (updates from the client), without HTTP.
"""

import asyncio
import uuid

import pytest
from pydantic import ValidationError
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError
from temporalio.worker import Worker

import contracts.pool
from activities.pool_dispatch import submit_script_task
from contracts.jobs import FailureClass
from contracts.pool import (
    AgentRegistration,
    AgentReport,
    Claim,
    PoolState,
    ReportStatus,
    ScriptResult,
    ScriptStatus,
    ScriptTask,
    ScriptTaskInput,
    TaskReport,
    pool_workflow_id,
    script_workflow_id,
)
from tests.helpers import wait_for
from workflows.agent_pool import AgentPoolWorkflow
from workflows.script_task import ScriptTaskWorkflow

SHELL = ["shell"]


async def start_script(client, task_queue: str, capability: str = "shell", **options):
    task = ScriptTask(task_id=uuid.uuid4().hex, script="true", capability=capability, timeout_seconds=60)
    return await client.start_workflow(
        ScriptTaskWorkflow.run,
        ScriptTaskInput(task=task, **options),
        id=script_workflow_id(task.task_id),
        task_queue=task_queue,
        result_type=ScriptResult,
    )


async def claim(client, task_queue: str, agent_id: str, capabilities=SHELL) -> ScriptTask:
    return await client.get_workflow_handle(pool_workflow_id(task_queue)).execute_update(
        AgentPoolWorkflow.claim, Claim(agent_id=agent_id, capabilities=capabilities)
    )


async def report(client, task_id: str, agent_id: str, status: ReportStatus, **fields):
    return await client.get_workflow_handle(script_workflow_id(task_id)).execute_update(
        ScriptTaskWorkflow.report, AgentReport(agent_id=agent_id, report=TaskReport(status=status, **fields))
    )


async def queued(client, task_queue: str) -> int:
    pool = client.get_workflow_handle(pool_workflow_id(task_queue))
    try:
        return (await pool.query(AgentPoolWorkflow.status)).queued
    except RPCError:  # the first submit has not started the pool yet
        return 0


async def test_the_queue_survives_continue_as_new_in_order(ts_env, task_queue, pool_worker):
    client = ts_env.client
    pool = await client.start_workflow(
        AgentPoolWorkflow.run,
        PoolState(messages_per_run=4),
        id=pool_workflow_id(task_queue),
        task_queue=task_queue,
    )
    handles = []
    for n in range(10):  # one at a time, so the submit order is known
        handles.append(await start_script(client, task_queue))
        await wait_for(lambda n=n: _equals(queued(client, task_queue), n + 1), timeout=30)
    # A task another capability's agent cannot take stays queued behind the others.
    python = await start_script(client, task_queue, capability="python")
    await wait_for(lambda: _equals(queued(client, task_queue), 11), timeout=30)
    status = await pool.query(AgentPoolWorkflow.status)
    assert status.runs >= 2  # 11 submits at 4 messages per run
    assert status.queued_by_capability == {"shell": 10, "python": 1}

    claimed = [await claim(client, task_queue, f"agent-{n % 3}") for n in range(10)]
    assert [t.task_id for t in claimed] == [h.id.removeprefix("script/") for h in handles]

    # Nothing left for these capabilities: the validator turns the poll away. (That this writes no
    # history is checked on the dev server, tests/integration/test_pool_rest_api.py: the time-skipping
    # server records a workflow task even for a rejected update.)
    with pytest.raises(WorkflowUpdateFailedError) as rejected:
        await claim(client, task_queue, "agent-0")
    assert rejected.value.cause.type == "NoTask"

    python_task = await claim(client, task_queue, "py-agent", capabilities=["python", "shell"])
    assert python_task.capability == "python"
    for n, task in enumerate(claimed):
        await report(
            client, task.task_id, f"agent-{n % 3}", ReportStatus.COMPLETED, stdout=f"{n}\n", exit_code=0
        )
    await report(client, python_task.task_id, "py-agent", ReportStatus.FAILED, stderr="boom", exit_code=3)
    results = [await h.result() for h in handles]
    assert [(r.status, r.stdout, r.agent_id) for r in results] == [
        (ScriptStatus.COMPLETED, f"{n}\n", f"agent-{n % 3}") for n in range(10)
    ]
    failed = await python.result()
    assert (failed.status, failed.exit_code, failed.failure_class) == (
        ScriptStatus.FAILED,
        3,
        FailureClass.SCRIPT,
    )
    assert set((await pool.query(AgentPoolWorkflow.status)).agents) == {
        "agent-0",
        "agent-1",
        "agent-2",
        "py-agent",
    }


async def test_a_lost_agents_task_is_requeued_then_fails_as_infrastructure(ts_env, task_queue, pool_worker):
    client = ts_env.client
    handle = await start_script(client, task_queue, lease_seconds=30, max_attempts=2)
    task_id = handle.id.removeprefix("script/")
    await wait_for(lambda: _equals(queued(client, task_queue), 1), timeout=30)
    assert (await claim(client, task_queue, "first")).task_id == task_id
    await report(client, task_id, "first", ReportStatus.RUNNING)  # a beat renews the lease
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await report(client, task_id, "intruder", ReportStatus.COMPLETED, exit_code=0)
    assert refused.value.cause.type == "NotYourTask"

    await ts_env.sleep(31)  # no beat from "first" for a whole lease: lost, queued again
    await wait_for(lambda: _equals(queued(client, task_queue), 1), timeout=30)
    assert (await claim(client, task_queue, "second")).task_id == task_id
    with pytest.raises(WorkflowUpdateFailedError) as stale:  # the lost agent is not the holder any more
        await report(client, task_id, "first", ReportStatus.RUNNING)
    assert stale.value.cause.type == "NotYourTask"

    await ts_env.sleep(31)
    result = await handle.result()
    assert (result.status, result.failure_class, result.attempts) == (
        ScriptStatus.FAILED,
        FailureClass.INFRASTRUCTURE,
        2,
    )
    assert "agent first sent no beat for 30 s (attempt 1)" in result.reason
    assert "agent second sent no beat for 30 s (attempt 2)" in result.reason
    assert await queued(client, task_queue) == 0


async def test_a_script_without_a_result_by_its_timeout_ends_timed_out(ts_env, task_queue, pool_worker):
    client = ts_env.client
    handle = await start_script(client, task_queue, lease_seconds=30)
    task_id = handle.id.removeprefix("script/")
    await wait_for(lambda: _equals(queued(client, task_queue), 1), timeout=30)
    await claim(client, task_queue, "slow")
    for _ in range(3):  # beats keep the lease, but the 60 s timeout (+ one lease of grace) still ends it
        await ts_env.sleep(25)
        await report(client, task_id, "slow", ReportStatus.RUNNING)
    result = await handle.result()
    assert (result.status, result.failure_class, result.agent_id) == (
        ScriptStatus.TIMED_OUT,
        FailureClass.SCRIPT,
        "slow",
    )


async def test_an_unclaimed_task_fails_after_the_queue_timeout_and_leaves_the_queue(
    ts_env, task_queue, pool_worker
):
    client = ts_env.client
    handle = await start_script(client, task_queue, capability="gpu", queue_timeout_seconds=120)
    await wait_for(lambda: _equals(queued(client, task_queue), 1), timeout=30)
    result = await handle.result()
    assert (result.status, result.failure_class) == (ScriptStatus.FAILED, FailureClass.INFRASTRUCTURE)
    assert result.reason == "no agent with capability 'gpu' claimed the task within 120 s"
    await wait_for(lambda: _equals(queued(client, task_queue), 0), timeout=30)


async def _equals(value, expected) -> bool:
    return await value == expected


async def test_the_registry_holds_at_most_max_pool_agents(ts_env, task_queue, monkeypatch):
    monkeypatch.setattr(contracts.pool, "MAX_POOL_AGENTS", 3)  # read when the worker's sandbox imports
    client = ts_env.client
    async with Worker(client, task_queue=task_queue, workflows=[AgentPoolWorkflow]):
        pool = await client.start_workflow(
            AgentPoolWorkflow.run, PoolState(), id=pool_workflow_id(task_queue), task_queue=task_queue
        )
        for n in range(5):
            await pool.signal(
                AgentPoolWorkflow.register, AgentRegistration(agent_id=f"agent-{n}", capabilities=SHELL)
            )
        # Registered again (a restart) while full: still known, nothing added.
        await pool.signal(
            AgentPoolWorkflow.register, AgentRegistration(agent_id="agent-1", capabilities=SHELL)
        )
        with pytest.raises(WorkflowUpdateFailedError):  # nothing queued: "no task", and not recorded
            await claim(client, task_queue, "agent-9")
        status = await pool.query(AgentPoolWorkflow.status)
        await pool.terminate()
    assert sorted(status.agents) == ["agent-0", "agent-1", "agent-2"]


async def test_a_full_queue_refuses_a_submit_and_the_task_waits_in_its_own_workflow(
    ts_env, task_queue, monkeypatch
):
    """The queue is carried whole across continue-as-new, so it is bounded: a task past the bound is not
    lost but waits in its script workflow (the submit activity is refused, with the reason, and retried),
    and is queued once there is room; FIFO among the queued is kept."""
    monkeypatch.setattr(contracts.pool, "MAX_QUEUED_TASKS", 3)  # read when the worker's sandbox imports
    client = ts_env.client
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[AgentPoolWorkflow, ScriptTaskWorkflow],
        activities=[submit_script_task],
    ):
        handles = []
        for _ in range(5):
            handles.append(await start_script(client, task_queue))
            await asyncio.sleep(0.2)  # submit order = start order, for the FIFO check below
        await wait_for(lambda: _equals(queued(client, task_queue), 3), timeout=30)

        async def refused(handle) -> bool:
            pending = (await handle.describe()).raw_description.pending_activities
            return bool(pending) and "the pool queue is full (3 tasks" in pending[0].last_failure.message

        for waiting in handles[3:]:
            await wait_for(lambda waiting=waiting: refused(waiting), timeout=30)
        first = [await claim(client, task_queue, "agent-0") for _ in range(3)]
        assert [t.task_id for t in first] == [h.id.removeprefix("script/") for h in handles[:3]]
        await wait_for(lambda: _equals(queued(client, task_queue), 2), timeout=30)
        rest = {(await claim(client, task_queue, "agent-0")).task_id for _ in range(2)}
        assert rest == {h.id.removeprefix("script/") for h in handles[3:]}


def test_a_script_over_the_limit_is_refused_at_the_edge():
    with pytest.raises(ValidationError, match="at most 65536 characters"):
        ScriptTask(task_id="big", script="x" * (contracts.pool.SCRIPT_LIMIT + 1))
