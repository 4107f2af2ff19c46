"""The step DAG engine: check a TaskSpec, then run its steps as soon as everything they need succeeded.

A failed or timed-out step skips all its descendants (never started) while independent branches run
to the end; `cancel()` stops running steps and starts no more.
"""

import asyncio
from collections import Counter, deque
from collections.abc import Callable
from pathlib import Path

from agent_runtime.step_process import LineCallback, run_step
from contracts.jobs import FailureClass
from contracts.steps import StepResult, StepSpec, StepStatus, TaskResult, TaskSpec

# on_state(step name, status): RUNNING when a step starts, then how it ended (also SKIPPED, CANCELLED).
StateCallback = Callable[[str, StepStatus], None]


class DagError(ValueError):
    """A TaskSpec that can't run: duplicate names, unknown dependencies or a dependency cycle."""


def validate(spec: TaskSpec) -> list[str]:
    """Return the step names in an order that runs every step after its needs, or raise DagError."""
    names = [step.name for step in spec.steps]
    duplicates = sorted(name for name, count in Counter(names).items() if count > 1)
    if duplicates:
        raise DagError("duplicate step names: " + ", ".join(repr(name) for name in duplicates))
    unknown = [
        f"step {step.name!r} needs unknown step {need!r}"
        for step in spec.steps
        for need in step.needs
        if need not in names
    ]
    if unknown:
        raise DagError("; ".join(unknown))

    # Kahn's algorithm, seeded in spec order so the order is stable.
    needs = {step.name: set(step.needs) for step in spec.steps}
    needed_by: dict[str, list[str]] = {name: [] for name in names}
    for name, its_needs in needs.items():
        for need in its_needs:
            needed_by[need].append(name)
    waiting_on = {name: len(its_needs) for name, its_needs in needs.items()}
    ready = deque(name for name in names if not waiting_on[name])
    order: list[str] = []
    while ready:
        name = ready.popleft()
        order.append(name)
        for later in needed_by[name]:
            waiting_on[later] -= 1
            if not waiting_on[later]:
                ready.append(later)
    if len(order) < len(names):
        raise DagError("dependency cycle: " + " -> ".join(_a_cycle(names, needs, set(order))))
    return order


def _a_cycle(names: list[str], needs: dict[str, set[str]], ordered: set[str]) -> list[str]:
    """One cycle among the steps Kahn's algorithm could not order, as `a, b, ..., a` (each needs the next).

    Every such step needs at least one other unordered step, so following those needs must come
    back to a step already on the path.
    """
    stuck = [name for name in names if name not in ordered]
    path: list[str] = []
    at = stuck[0]
    while at not in path:
        path.append(at)
        at = next(need for need in sorted(needs[at], key=names.index) if need not in ordered)
    cycle = path[path.index(at) :]
    # Start at the step listed first in the spec, so the same cycle always reads the same way.
    first = min(range(len(cycle)), key=lambda i: names.index(cycle[i]))
    cycle = cycle[first:] + cycle[:first]
    return [*cycle, cycle[0]]


class DagRunner:
    """Run one TaskSpec's steps in `workdir`, at most `max_parallel` at a time.

    `on_line(step, "stdout" | "stderr", line)` sees every output line, in order per stream, and
    `on_state` every step's start and end; both run on the event loop and must be quick. `cancel()` is
    called from the event loop's thread.
    """

    def __init__(
        self,
        spec: TaskSpec,
        workdir: Path,
        on_line: LineCallback | None = None,
        on_state: StateCallback | None = None,
    ) -> None:
        self._spec = spec
        self._workdir = workdir
        self._on_line = on_line
        self._on_state = on_state or (lambda name, status: None)
        self._cancelled = asyncio.Event()
        self._done: dict[str, asyncio.Task[StepResult]] = {}

    def cancel(self) -> None:
        """Stop running steps (SIGTERM, SIGKILL after the grace period) and start no more."""
        self._cancelled.set()

    async def run(self) -> TaskResult:
        """Run the task to its end; raises DagError, before starting anything, if the spec is invalid."""
        order = validate(self._spec)
        by_name = {step.name: step for step in self._spec.steps}
        slots = asyncio.Semaphore(self._spec.max_parallel)
        # Created in dependency order, so every step's needs already have their task.
        for name in order:
            self._done[name] = asyncio.create_task(self._run_when_ready(by_name[name], slots))
        try:
            await asyncio.gather(*self._done.values())
        finally:
            # Only does anything if run() itself was cancelled or a step raised: stop the rest.
            for task in self._done.values():
                task.cancel()
        return self._task_result([self._done[step.name].result() for step in self._spec.steps])

    async def _run_when_ready(self, step: StepSpec, slots: asyncio.Semaphore) -> StepResult:
        result = await self._run_step_when_ready(step, slots)
        self._on_state(step.name, result.status)
        return result

    async def _run_step_when_ready(self, step: StepSpec, slots: asyncio.Semaphore) -> StepResult:
        # In `needs` order, so which failed ancestor a skipped step names doesn't depend on timing.
        for need in step.needs:
            before = await self._done[need]
            if before.status is not StepStatus.SUCCEEDED:
                return _not_started(step, before)
        async with slots:
            if self._cancelled.is_set():
                return StepResult(name=step.name, status=StepStatus.CANCELLED)
            self._on_state(step.name, StepStatus.RUNNING)
            return await run_step(
                step,
                self._workdir,
                kill_grace_seconds=self._spec.kill_grace_seconds,
                cancelled=self._cancelled,
                on_line=self._on_line,
            )

    def _task_result(self, steps: list[StepResult]) -> TaskResult:
        if all(step.status is StepStatus.SUCCEEDED for step in steps):
            status = StepStatus.SUCCEEDED
        elif self._cancelled.is_set():
            status = StepStatus.CANCELLED
        else:
            status = StepStatus.FAILED
        classes = {step.failure_class for step in steps}
        # A step that could not even start says more about the run than any script failure beside it.
        for failure in (FailureClass.INFRASTRUCTURE, FailureClass.SCRIPT):
            if failure in classes:
                return TaskResult(status=status, steps=steps, failure_class=failure)
        return TaskResult(status=status, steps=steps)


def _not_started(step: StepSpec, before: StepResult) -> StepResult:
    """The result of a step whose need `before` did not succeed."""
    if before.status is StepStatus.CANCELLED:
        return StepResult(name=step.name, status=StepStatus.CANCELLED)
    # Name the step that actually failed, however far up the chain it is.
    culprit = before.skipped_because if before.status is StepStatus.SKIPPED else before.name
    return StepResult(name=step.name, status=StepStatus.SKIPPED, skipped_because=culprit)
