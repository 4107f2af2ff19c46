"""The agent's steps as spans of its job's trace, made by the gateway from what the agent reports.

The agent is untrusted and talks to nothing but the gateway: it cannot export spans, and it must not
choose where they go. So the trace context comes from the conductor's own record of the attempt: the
staging activity, which runs inside the job's trace (the SDK's tracing interceptor), writes its span's
W3C `traceparent` into the staged attempt (stores/attempts.py). The agent reports each step's wall-clock
start and end, status and exit code with its result, and the gateway that accepts the result makes

    RunActivity:stage_task_files            (the tracing interceptor's span)
      AgentAttempt                          the agent's run, from its reported duration
        AgentStep:clone, AgentStep:code ...  one per step that ran

with explicit start and end times. Everything the agent says is bounded: at most MAX_STEP_SPANS steps, names
cut to MAX_NAME_CHARS and to the step-name alphabet, an unknown status named as such, and every time
clamped to the attempt's life (staged .. result received). A missing or malformed `traceparent` makes no
spans and no error.

Once per attempt: spans are made only when the job accepted the result (the gateway completed the
attempt's await activity, which Temporal lets happen once, on whichever replica), never from heartbeats,
which repeat the step states. An agent that never reports leaves no step spans (its lost attempt shows in
the activity spans); a gateway that dies between accepting the result and making the spans loses them.
"""

import math
import re

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from contracts.steps import StepStatus
from proto.conductor.v1 import agent_pb2
from stores.attempts import StagedAttempt

MAX_STEP_SPANS = 64
MAX_NAME_CHARS = 100
# A traceparent is 55 characters; anything much longer is not one (and is not parsed).
MAX_TRACEPARENT_CHARS = 256
_NOT_NAME = re.compile(r"[^A-Za-z0-9_.-]")
_STATUSES = {status.value for status in StepStatus}
_FAILED = {StepStatus.FAILED.value, StepStatus.TIMED_OUT.value}
_PROPAGATOR = TraceContextTextMapPropagator()


def parent_context(traceparent: str) -> Context | None:
    """The context whose current span is the one `traceparent` names; None when it names none."""
    if not traceparent or len(traceparent) > MAX_TRACEPARENT_CHARS:
        return None
    context = _PROPAGATOR.extract({"traceparent": traceparent})
    return context if trace.get_current_span(context).get_span_context().is_valid else None


class AgentSpans:
    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer

    def record(
        self,
        staged: StagedAttempt,
        result: agent_pb2.AgentResult,
        *,
        now: float,
    ) -> int:
        """The attempt's span and the spans of the steps in its `result`, ended; returns how many step
        spans were made. `now` (Unix seconds) is when the result was accepted: the end of the attempt's life."""
        parent = parent_context(staged.traceparent)
        if parent is None:
            return 0
        born = staged.staged_at if 0 < staged.staged_at <= now else now
        ids = {"conductor.job_id": staged.job_id, "conductor.attempt": staged.attempt}
        # `now` is when the result arrived, later than the agent's end by the upload's latency, so
        # `now - duration` can fall after the first step's start (by 7 ms in a loaded test run): the
        # attempt starts no later than its first step.
        step_starts = [
            _clamped(s.started_at, born, now) for s in result.steps[:MAX_STEP_SPANS] if s.started_at > 0
        ]
        attempt = self._tracer.start_span(
            "AgentAttempt",
            context=parent,
            start_time=_ns(min([_clamped(now - result.duration_seconds, born, now), *step_starts])),
            attributes={
                **ids,
                "conductor.agent_status": _cut(result.status),
                "conductor.steps_reported": len(result.steps),
            },
        )
        if result.status != "SUCCEEDED":
            attempt.set_status(Status(StatusCode.ERROR))
        inside = trace.set_span_in_context(attempt)
        made: set[str] = set()
        for state in result.steps[:MAX_STEP_SPANS]:
            name = _NOT_NAME.sub("_", state.name[:MAX_NAME_CHARS]) or "_"
            if name in made or not state.started_at > 0:  # a repeated report, or a step that never ran
                continue
            made.add(name)
            start = _clamped(state.started_at, born, now)
            end = _clamped(state.ended_at, start, now)
            step_status = state.status if state.status in _STATUSES else "INVALID"
            attributes = {**ids, "conductor.step": name, "conductor.step_status": step_status}
            if state.HasField("exit_code"):
                attributes["conductor.exit_code"] = state.exit_code
            span = self._tracer.start_span(
                f"AgentStep:{name}", context=inside, start_time=_ns(start), attributes=attributes
            )
            if step_status in _FAILED:
                span.set_status(Status(StatusCode.ERROR))
            span.end(end_time=_ns(end))
        attempt.end(end_time=_ns(now))
        return len(made)


def _clamped(t: float, low: float, high: float) -> float:
    return low if not math.isfinite(t) else min(max(t, low), high)


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


def _cut(text: str) -> str:
    return text[:MAX_NAME_CHARS]
