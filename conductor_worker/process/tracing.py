"""OpenTelemetry traces: one trace per intake message, from its receive through every workflow and activity.

With CONDUCTOR_OTLP_TRACES_ENDPOINT set (an OTLP/HTTP collector, e.g. `http://otel-collector:4318/v1/traces`),
the conductor's Temporal client carries the SDK's tracing interceptor: starting a workflow, running it,
its child workflows, signals and activities become spans, and Temporal's headers carry the trace context
from one to the next, across replicas. The intake opens each trace with a `sqs.receive` span, so a
ticket's trace begins where its message was taken off the queue. Workflow spans are made on first
execution only, never again on replay. The agent's steps join the trace through the gateway
(conductor_worker/gateway/agent_spans.py).
"""

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from temporalio.contrib.opentelemetry import TracingInterceptor

from conductor_worker.config import Settings

TRACER_NAME = "agent-conductor"


def tracer_provider(settings: Settings) -> TracerProvider | None:
    """The OTLP-exporting provider the settings ask for, or None (tracing off)."""
    if not settings.otlp_traces_endpoint:
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    provider = TracerProvider(
        resource=Resource.create({"service.name": TRACER_NAME, "service.instance.id": settings.replica})
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otlp_traces_endpoint)))
    return provider


def tracer_of(provider: TracerProvider | None) -> trace.Tracer:
    return provider.get_tracer(TRACER_NAME) if provider is not None else trace.NoOpTracer()


def client_interceptors(provider: TracerProvider | None) -> list:
    """For the Temporal client; its workers take the same interceptor for workflows and activities."""
    return [TracingInterceptor(tracer_of(provider))] if provider is not None else []
