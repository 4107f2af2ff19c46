"""What an agent reports about its steps becomes spans only within bounds: the agent is untrusted."""

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from conductor_worker.gateway.agent_spans import MAX_NAME_CHARS, MAX_STEP_SPANS, AgentSpans, parent_context
from proto.conductor.v1 import agent_pb2
from stores.attempts import StagedAttempt

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
STAGED_AT = 1_700_000_000.0
NOW = STAGED_AT + 100.0


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter, AgentSpans(provider.get_tracer("test"))


def staged(traceparent: str = TRACEPARENT) -> StagedAttempt:
    return StagedAttempt(job_id="job/t/1", attempt=2, files=[], traceparent=traceparent, staged_at=STAGED_AT)


def step(name: str, status: str = "SUCCEEDED", start: float = 10.0, end: float = 20.0, **more):
    return agent_pb2.StepState(
        name=name, status=status, started_at=STAGED_AT + start, ended_at=STAGED_AT + end, **more
    )


def result(*steps, status: str = "SUCCEEDED", duration: float = 60.0) -> agent_pb2.AgentResult:
    return agent_pb2.AgentResult(status=status, duration_seconds=duration, steps=steps)


def by_name(exporter) -> dict:
    return {span.name: span for span in exporter.get_finished_spans()}


def test_the_attempt_starts_no_later_than_its_first_step_though_the_result_arrived_late(spans):
    """The result arrives after the agent's end by the upload's latency: `now - duration` then falls after
    the first step's start (by 7 ms in a loaded CI run), and the step would start before its parent."""
    exporter, agent_spans = spans
    first = step("clone", start=NOW - STAGED_AT - 60.007, end=NOW - STAGED_AT - 30)
    agent_spans.record(staged(), result(first, duration=60.0), now=NOW)
    found = by_name(exporter)
    attempt, clone = found["AgentAttempt"], found["AgentStep:clone"]
    assert attempt.start_time == clone.start_time < int((NOW - 60) * 1e9)
    assert attempt.start_time <= clone.start_time <= clone.end_time <= attempt.end_time


def test_steps_hang_under_the_attempt_under_the_staged_span(spans):
    exporter, agent_spans = spans
    made = agent_spans.record(
        staged(),
        result(step("clone", exit_code=0), step("code", "FAILED", 20.0, 50.0, exit_code=3)),
        now=NOW,
    )
    assert made == 2
    found = by_name(exporter)
    attempt, clone, code = found["AgentAttempt"], found["AgentStep:clone"], found["AgentStep:code"]
    assert {span.context.trace_id for span in found.values()} == {int(TRACE_ID, 16)}
    assert attempt.parent.span_id == int(PARENT_ID, 16)
    assert clone.parent.span_id == code.parent.span_id == attempt.context.span_id
    # It reported 60 s, but its first step started 90 s ago: the attempt starts with that step.
    assert (attempt.start_time, attempt.end_time) == (clone.start_time, int(NOW * 1e9))
    assert (code.start_time, code.end_time) == (int((STAGED_AT + 20) * 1e9), int((STAGED_AT + 50) * 1e9))
    assert dict(code.attributes) == {
        "conductor.job_id": "job/t/1",
        "conductor.attempt": 2,
        "conductor.step": "code",
        "conductor.step_status": "FAILED",
        "conductor.exit_code": 3,
    }
    assert code.status.status_code is StatusCode.ERROR
    assert clone.status.status_code is StatusCode.UNSET


@pytest.mark.parametrize(
    "traceparent",
    [
        "",
        "garbage",
        f"00-{'0' * 32}-{PARENT_ID}-01",  # the all-zero trace id is invalid
        f"00-{TRACE_ID}-{'0' * 16}-01",
        f"00-{TRACE_ID[:-1]}-{PARENT_ID}-01",
        TRACEPARENT + "x" * 10_000,
    ],
)
def test_a_missing_or_malformed_traceparent_makes_no_spans_and_no_error(spans, traceparent):
    exporter, agent_spans = spans
    assert parent_context(traceparent) is None
    assert agent_spans.record(staged(traceparent), result(step("clone")), now=NOW) == 0
    assert exporter.get_finished_spans() == ()


def test_a_repeated_step_makes_one_span_and_steps_that_never_ran_none(spans):
    exporter, agent_spans = spans
    skipped = agent_pb2.StepState(name="bundle", status="SKIPPED")
    made = agent_spans.record(staged(), result(step("code"), step("code", start=30.0), skipped), now=NOW)
    assert made == 1
    assert [s.name for s in exporter.get_finished_spans()] == ["AgentStep:code", "AgentAttempt"]


def test_names_statuses_and_times_from_the_agent_are_bounded(spans):
    exporter, agent_spans = spans
    hostile = [
        step("x" * 10_000 + "\n"),
        step("evil\nname{}", status="<script>", start=-1e6, end=1e12),
        step("inf", start=5.0, end=float("inf")),
        step("nan", start=float("nan"), end=20.0),  # no start: as if it never ran
        step("backwards", start=50.0, end=40.0),
    ]
    agent_spans.record(staged(), result(*hostile, duration=1e12), now=NOW)
    found = by_name(exporter)
    long_name = "x" * MAX_NAME_CHARS
    assert set(found) == {
        "AgentAttempt",
        f"AgentStep:{long_name}",
        "AgentStep:evil_name__",
        "AgentStep:inf",
        "AgentStep:backwards",
    }
    life = (int(STAGED_AT * 1e9), int(NOW * 1e9))
    for span in found.values():  # nothing before the attempt was staged, nothing after its result
        assert life[0] <= span.start_time <= span.end_time <= life[1], span.name
    assert found["AgentAttempt"].start_time == life[0]
    assert found["AgentStep:evil_name__"].attributes["conductor.step_status"] == "INVALID"
    assert found["AgentStep:backwards"].end_time == found["AgentStep:backwards"].start_time


def test_at_most_max_step_spans_per_attempt(spans):
    exporter, agent_spans = spans
    many = [step(f"s{i}") for i in range(MAX_STEP_SPANS * 10)]
    assert agent_spans.record(staged(), result(*many), now=NOW) == MAX_STEP_SPANS
    assert len(exporter.get_finished_spans()) == MAX_STEP_SPANS + 1
    assert by_name(exporter)["AgentAttempt"].attributes["conductor.steps_reported"] == MAX_STEP_SPANS * 10


def test_a_record_staged_before_traces_loads_and_makes_no_spans(spans):
    exporter, agent_spans = spans
    old = StagedAttempt.model_validate_json('{"job_id": "job/t/1", "attempt": 1, "files": []}')
    assert (old.traceparent, old.staged_at) == ("", 0.0)
    assert agent_spans.record(old, result(step("clone")), now=NOW) == 0
    assert exporter.get_finished_spans() == ()
