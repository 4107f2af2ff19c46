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
"""

import functools

from temporalio.client import Client
from temporalio.common import MetricMeter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

JOB_DURATION_BUCKETS = [10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400]


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
