"""Prometheus metrics: the Temporal SDK's own and the conductor's, served by one exporter.

With CONDUCTOR_METRICS_LISTEN set (e.g. `0.0.0.0:9464`), the conductor's Temporal runtime serves
`http://<address>/metrics` in the Prometheus text format: the SDK's worker and client metrics
(`temporal_*`: task slots, poll and schedule-to-start latencies, workflow task failures, ...) and the
conductor's own, which are recorded through the same runtime's meter, so there is one exporter to run and
one port to scrape. Jobs are counted by the workflow's own replay-safe meter: a replay counts nothing again.

    conductor_intake_messages_total{kind, outcome}   SQS/webhook messages: started | duplicate |
                                                      dead_lettered | unavailable (kind: ticket | alarm | poison)
    conductor_jobs_ended_total{kind, state}          agent jobs reaching an end state (a retried job counts each end)
    conductor_job_duration_seconds{kind, state}      histogram: from the job's start to that end
    conductor_agents_lost_total{kind}                agents that crashed, fell silent or never handshook
    conductor_agent_heartbeats_total{outcome}        agent heartbeats the gateway took: recorded | stop (the
                                                      agent was told to stop) | not_recorded (Temporal away)
    conductor_jobs{state}                            gauge: open agent jobs by JobState (conductor_worker/process/job_gauge.py)
    conductor_model_requests_total{provider, status} requests through the model gateway, by answer status
    conductor_model_request_seconds{provider}        histogram: the gateway's whole answer, upstream included
    conductor_model_tokens_total{kind, direction}    tokens the model gateway counted (input | output)
"""

import functools

from temporalio.client import Client
from temporalio.common import MetricMeter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

JOB_DURATION_BUCKETS = [10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400]
MODEL_REQUEST_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300]


@functools.cache
def metrics_runtime(listen: str) -> Runtime:
    """One runtime per address and process: its exporter binds the port for the life of the process."""
    return Runtime(
        telemetry=TelemetryConfig(
            metrics=PrometheusConfig(
                bind_address=listen, counters_total_suffix=True, durations_as_seconds=True
            )
        )
    )


def client_meter(client: Client) -> MetricMeter:
    """The meter of the client's runtime: a no-op unless the runtime exports metrics."""
    runtime = client.service_client.config.runtime or Runtime.default()
    return runtime.metric_meter


class IntakeMetrics:
    def __init__(self, meter: MetricMeter) -> None:
        self._messages = meter.create_counter(
            "conductor_intake_messages", "Intake messages by kind and what became of them"
        )

    def message(self, kind: str, outcome: str) -> None:
        self._messages.add(1, {"kind": kind, "outcome": outcome})


class GatewayMetrics:
    def __init__(self, meter: MetricMeter) -> None:
        self._heartbeats = meter.create_counter("conductor_agent_heartbeats", "Agent heartbeats by outcome")

    def heartbeat(self, outcome: str) -> None:
        self._heartbeats.add(1, {"outcome": outcome})


class ModelGatewayMetrics:
    def __init__(self, meter: MetricMeter) -> None:
        self._requests = meter.create_counter("conductor_model_requests", "Model gateway requests by status")
        self._latency = meter.create_histogram_float(
            "conductor_model_request_seconds", "Model gateway answers, from request to last byte"
        )
        self._tokens = meter.create_counter("conductor_model_tokens", "Model tokens counted by the gateway")

    def request(self, provider: str, status: int, seconds: float) -> None:
        self._requests.add(1, {"provider": provider, "status": str(status)})
        self._latency.record(seconds, {"provider": provider})

    def tokens(self, kind: str, input_tokens: int, output_tokens: int) -> None:
        if input_tokens:
            self._tokens.add(input_tokens, {"kind": kind, "direction": "input"})
        if output_tokens:
            self._tokens.add(output_tokens, {"kind": kind, "direction": "output"})
