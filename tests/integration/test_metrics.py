"""Prometheus metrics: a real Prometheus server (Debian's `prometheus`) scrapes the conductor on loopback
and answers PromQL about the jobs and messages it saw."""

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from contracts.jobs import JobState
from tests.helpers import free_port, fresh_key, sqs_client, stop_process, ticket_body, ticket_result, wait_for

TICKETS = 5


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(the conductor's metrics address to serve on, the Prometheus API's URL) for one scrape target."""
    binary = shutil.which("prometheus")
    assert binary, (
        "prometheus is not installed: `make test` installs Debian's package (apt-get install prometheus)"
    )
    target = f"127.0.0.1:{free_port()}"
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"scrape_configs:\n  - job_name: conductor\n    static_configs: [{{targets: ['{target}']}}]\n"
    )
    api = f"127.0.0.1:{free_port()}"
    log = (tmp_path / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address={api}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield target, f"http://{api}"
    finally:
        stop_process(proc, timeout=20)
        log.close()


async def promql(api: str, query: str) -> float | None:
    """The query's single value, or None while Prometheus has none (not scraped yet, not ready)."""
    async with httpx.AsyncClient(timeout=5) as http:
        try:
            answer = (await http.get(f"{api}/api/v1/query", params={"query": query})).json()
        except (httpx.HTTPError, ValueError):
            return None
    results = answer.get("data", {}).get("result", [])
    return float(results[0]["value"][1]) if results else None


async def test_prometheus_counts_the_jobs_and_messages_it_scraped(
    client, intake_settings, start_conductor, prometheus
):
    target, api = prometheus
    settings = intake_settings.model_copy(update={"metrics_listen": target})
    keys = [fresh_key() for _ in range(TICKETS)]
    sqs = sqs_client(settings)
    for key in keys:
        sqs.send_message(QueueUrl=settings.sqs_queue_url, MessageBody=ticket_body(key))
    sqs.send_message(QueueUrl=settings.sqs_queue_url, MessageBody="not json")
    await start_conductor(settings)
    for key in keys:
        assert (await ticket_result(client, key)).state == JobState.SUCCEEDED
    sqs.send_message(QueueUrl=settings.sqs_queue_url, MessageBody=ticket_body(keys[0]))  # a duplicate

    succeeded = 'sum(conductor_jobs_ended_total{kind="ticket", state="SUCCEEDED"})'
    assert await reaches(api, succeeded, TICKETS, timeout=60) == TICKETS
    intake = 'sum(conductor_intake_messages_total{{kind="{}", outcome="{}"}})'
    assert await reaches(api, intake.format("ticket", "started"), TICKETS) == TICKETS
    assert await reaches(api, intake.format("ticket", "duplicate"), 1) == 1
    assert await reaches(api, intake.format("poison", "dead_lettered"), 1) == 1
    durations = 'sum(conductor_job_duration_seconds_count{state="SUCCEEDED"})'
    assert await promql(api, durations) == TICKETS
    # The SDK's own metrics come through the same exporter.
    assert (await promql(api, "sum(temporal_workflow_completed_total)") or 0) >= TICKETS


async def reaches(api: str, query: str, expected: float, timeout: float = 30) -> float | None:
    """The query's value once it equals `expected`, or its last value when `timeout` ran out."""
    value = None

    async def equal() -> bool:
        nonlocal value
        value = await promql(api, query)
        return value == expected

    try:
        await wait_for(equal, timeout=timeout, interval=0.5)
    except TimeoutError:
        pass
    return value
