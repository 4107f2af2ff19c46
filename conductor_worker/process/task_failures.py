"""Workflow tasks that fail are never silent: logged once at ERROR with the workflow id and cause, counted.

A Python exception that is not a Temporal failure (a `ValueError` in a signal handler, say) does not fail
the workflow: it fails the *workflow task*, which Temporal retries for ever while the workflow looks
RUNNING and decides nothing. This worker interceptor sees each such exception on its way out of the
workflow's code, logs the first one per workflow run and cause (the retries repeat it), and counts every
one, in `WorkflowTaskFailures` and in the SDK's metric meter (`conductor_workflow_task_failures`).
`conductor doctor` finds the same workflows from the server's side (their pending task's attempt).
"""

import logging
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from temporalio import workflow
from temporalio.exceptions import FailureError
from temporalio.worker import (
    ExecuteWorkflowInput,
    HandleSignalInput,
    HandleUpdateInput,
    Interceptor,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
)

log = logging.getLogger(__name__)

# Runs remembered as already logged; older ones may be logged again, which is harmless.
REPORTED_KEPT = 10_000


class WorkflowTaskFailures(Interceptor):
    """One per worker; `count` and `failing` are what tests and operators read."""

    def __init__(self) -> None:
        self.count = 0
        # (workflow id, run id) -> "ExceptionType: message" of its first task failure, newest last.
        self.failing: OrderedDict[tuple[str, str], str] = OrderedDict()

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        failures = self

        class _Inbound(WorkflowInboundInterceptor):
            async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
                with failures.watching("run"):
                    return await super().execute_workflow(input)

            async def handle_signal(self, input: HandleSignalInput) -> None:
                with failures.watching(f"signal {input.signal}"):
                    return await super().handle_signal(input)

            async def handle_update_handler(self, input: HandleUpdateInput) -> Any:
                with failures.watching(f"update {input.update}"):
                    return await super().handle_update_handler(input)

        return _Inbound

    @contextmanager
    def watching(self, where: str) -> Iterator[None]:
        try:
            yield
        except FailureError:  # fails the workflow (or the update) on purpose
            raise
        except Exception as err:  # cancellation and continue-as-new are BaseExceptions: not counted
            self.record(where, err)
            raise

    def record(self, where: str, err: BaseException) -> None:
        info = workflow.info()
        key = (info.workflow_id, info.run_id)
        cause = f"{type(err).__name__}: {err}"
        self.count += 1
        workflow.metric_meter().create_counter(
            "conductor_workflow_task_failures", "Workflow tasks failed by an exception in workflow code"
        ).add(1, {"workflow_type": info.workflow_type})
        if key in self.failing:
            return
        self.failing[key] = cause
        while len(self.failing) > REPORTED_KEPT:
            self.failing.popitem(last=False)
        # Not workflow.logger: that one is silenced during replay, and a failing task is always retried
        # from a replay.
        log.error(
            "workflow task failing: %s %s (run %s) in %s: %s; Temporal retries it until the code is "
            "fixed; `conductor doctor` lists such workflows",
            info.workflow_type,
            info.workflow_id,
            info.run_id,
            where,
            cause,
        )
