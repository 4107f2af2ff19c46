"""OpenTelemetry: a ticket's trace runs from its SQS receive through the ticket and job workflows, the
job's activities and the agent's steps, under one trace id (spans kept in memory instead of an OTLP
collector). The agent is a real subprocess; the gateway makes its steps' spans from its result."""

import asyncio
import time

import grpc
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from activities import task_files
from conductor_worker.gateway.server import start_gateway
from conductor_worker.process.app import run_conductor
from contracts.jobs import JobState, TaskFile
from proto.conductor.v1 import agent_pb2, agent_pb2_grpc
from security.tokens import mint_token
from tests.helpers import fresh_key, sqs_client, stage_attempt, ticket_body, ticket_result

AGENT_STEPS = ("AgentStep:clone", "AgentStep:code", "AgentStep:bundle")


async def test_a_tickets_trace_runs_from_its_sqs_receive_to_its_agents_steps(client, intake_settings):
    key, finished = await _run_ticket(client, intake_settings)

    (receive,) = [s for s in finished if s.name == "sqs.receive" and _started_ticket(finished, s, key)]
    trace = [s for s in finished if s.context.trace_id == receive.context.trace_id]
    names = [s.name for s in trace]
    for name in (
        "StartWorkflow:TicketWorkflow",
        "RunWorkflow:TicketWorkflow",
        "StartChildWorkflow:AgentJobWorkflow",
        "RunWorkflow:AgentJobWorkflow",
        "RunActivity:stage_task_files",
        "RunActivity:launch_agent",
        "RunActivity:await_agent_result",
        "RunActivity:publish_local",
        "AgentAttempt",
        *AGENT_STEPS,
    ):
        assert name in names, f"{name} not in the ticket's trace: {sorted(set(names))}"
    # Everything the job's run does is in the ticket's trace. What the agent gateway sends the job on the
    # agent's behalf (its `progress` signal, the await activity's completion) opens traces of its own.
    job = [s for s in finished if s.attributes.get("temporalWorkflowID") == f"job/ticket/jira/{key}"]
    run = [s for s in job if s.name.startswith(("RunWorkflow:", "StartActivity:", "RunActivity:"))]
    elsewhere = sorted({s.name for s in run if s.context.trace_id != receive.context.trace_id})
    assert len(run) >= 5 and elsewhere == [], elsewhere

    # The agent's steps hang under its attempt, under the activity that staged it, under the job's chain
    # (the tracing interceptor parents a workflow's calls under the span that started the workflow).
    (attempt,) = [s for s in trace if s.name == "AgentAttempt"]
    (staging,) = [s for s in trace if s.context.span_id == attempt.parent.span_id]
    assert staging.name == "RunActivity:stage_task_files"
    assert _ancestor_names(trace, staging) == [
        "StartActivity:stage_task_files",
        "StartChildWorkflow:AgentJobWorkflow",
        "StartWorkflow:TicketWorkflow",
        "sqs.receive",
    ]
    assert attempt.attributes["conductor.job_id"] == f"job/ticket/jira/{key}"
    steps = [s for s in finished if s.name.startswith("AgentStep:")]
    # One span per step, though every heartbeat repeated the step states.
    assert sorted(s.name for s in steps) == sorted(AGENT_STEPS)
    for step in steps:
        assert step.parent.span_id == attempt.context.span_id
        assert step.attributes["conductor.step_status"] == "SUCCEEDED"
        assert step.attributes["conductor.exit_code"] == 0
        assert attempt.start_time <= step.start_time <= step.end_time <= attempt.end_time
    clone, code, bundle = (next(s for s in steps if s.name == name) for name in AGENT_STEPS)
    assert clone.end_time <= code.start_time and code.end_time <= bundle.start_time


async def test_without_the_staged_trace_context_the_agents_steps_are_not_in_the_trace(
    client, intake_settings, monkeypatch
):
    """The protection off: the attempt staged without its trace context (as by a conductor that does not
    trace). The agent still runs and reports its steps; none of them is in the ticket's trace."""
    monkeypatch.setattr(task_files, "_current_traceparent", lambda: "")
    key, finished = await _run_ticket(client, intake_settings)

    (receive,) = [s for s in finished if s.name == "sqs.receive" and _started_ticket(finished, s, key)]
    names = {s.name for s in finished if s.context.trace_id == receive.context.trace_id}
    assert "RunActivity:stage_task_files" in names
    assert not names & {"AgentAttempt", *AGENT_STEPS}, names


async def test_a_result_sent_again_or_repeating_a_step_makes_each_span_once(settings):
    """A raw agent, against a gateway alone: the handshake hands it the staged trace context; its result,
    which names one step three times, makes one span for that step; the same result sent again makes none."""
    spans, provider = _in_memory()
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    job_id = f"job/ticket/jira/{fresh_key()}"
    stage_attempt(settings, job_id, 1, [TaskFile(path="job.json", content="{}")], traceparent=traceparent)
    token = mint_token(settings.signing_secret(), job_id, 1, ttl_seconds=60)
    metadata = (("authorization", f"Bearer {token}"),)
    now = time.time()
    step = agent_pb2.StepState(name="code", status="SUCCEEDED", started_at=now, ended_at=now, exit_code=0)
    result = agent_pb2.AgentResult(status="FAILED", summary="no bundle", steps=[step, step, step])
    server, port = await start_gateway(settings, tracer=provider.get_tracer("test"))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = agent_pb2_grpc.AgentServiceStub(channel)
            hello = await stub.Handshake(agent_pb2.HandshakeRequest(hostname="t"), metadata=metadata)
            assert hello.traceparent == traceparent
            upload = [agent_pb2.UploadResultRequest(result=result)]
            first = await stub.UploadResult(iter(upload), metadata=metadata)
            again = await stub.UploadResult(iter(upload), metadata=metadata)
    finally:
        await server.stop(grace=None)
    assert (first.duplicate, again.duplicate) == (False, True)
    names = [s.name for s in spans.get_finished_spans()]
    assert names == ["AgentStep:code", "AgentAttempt"], names
    assert {s.context.trace_id for s in spans.get_finished_spans()} == {int(traceparent[3:35], 16)}


def _in_memory() -> tuple[InMemorySpanExporter, TracerProvider]:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    return spans, provider


async def _run_ticket(client, settings) -> tuple[str, tuple[ReadableSpan, ...]]:
    spans, provider = _in_memory()
    key = fresh_key()
    sqs_client(settings).send_message(QueueUrl=settings.sqs_queue_url, MessageBody=ticket_body(key))
    stop = asyncio.Event()
    conductor = asyncio.create_task(run_conductor(settings, stop, tracing=provider))
    try:
        assert (await ticket_result(client, key)).state == JobState.SUCCEEDED
    finally:
        stop.set()
        await asyncio.wait_for(conductor, timeout=60)
    return key, spans.get_finished_spans()


def _started_ticket(spans, receive, key: str) -> bool:
    return any(
        s.parent is not None
        and s.parent.span_id == receive.context.span_id
        and s.attributes.get("temporalWorkflowID") == f"ticket/jira/{key}"
        for s in spans
    )


def _ancestor_names(trace: list[ReadableSpan], span: ReadableSpan) -> list[str]:
    """The names of the span's parent, its parent's parent, ... up to the trace's root."""
    by_id = {s.context.span_id: s for s in trace}
    names = []
    while span.parent is not None:
        span = by_id[span.parent.span_id]
        names.append(span.name)
    return names
