"""Prometheus metrics: a real Prometheus server (Debian's `prometheus`) scrapes the conductor on loopback
and answers PromQL about the jobs and messages it saw.

Every wait polls its condition under a bound and, when the bound runs out, says what it waited for and
what it saw: Prometheus's own state (its process, readiness, the scrape target's health, last error and
last scrape, the tail of its log) and each query's last answer. Once every counter is final (the last one
counted is the duplicate message), the values are waited for together, not one fixed deadline each.
"""

import asyncio
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from contracts.jobs import JobState
from tests.helpers import free_port, fresh_key, sqs_client, stop_process, ticket_body, ticket_result

TICKETS = 5
# A scrape every 2 s, each allowed the whole interval: on a loaded 2-core machine the conductor's exporter
# may take over a second to answer, and a timed-out scrape only shows as the target's last error.
SCRAPE_SECONDS = 2
READY_SECONDS = 60
COUNTED_SECONDS = 60
TICKET_SECONDS = 120
POLL_SECONDS = 0.5
LOG_TAIL_LINES = 15


@dataclass
class Prometheus:
    proc: subprocess.Popen
    api: str
    target: str
    log_path: Path

    async def get(self, path: str, **params: str) -> dict:
        """The API's JSON answer; raises what went wrong (connection, status, body). Asynchronous: the
        conductor under test runs on the same event loop."""
        async with httpx.AsyncClient(timeout=5) as http:
            response = await http.get(f"{self.api}{path}", params=params)
        response.raise_for_status()
        return response.json()

    async def query(self, promql: str) -> float | None:
        """The query's single value, None while Prometheus has no sample for it."""
        results = (await self.get("/api/v1/query", query=promql))["data"]["result"]
        return float(results[0]["value"][1]) if results else None

    async def describe(self) -> str:
        """What a failed wait reports: the process, the scrape target, the log's tail."""
        if (code := self.proc.poll()) is not None:
            state = f"prometheus exited with status {code}"
        else:
            try:
                targets = (await self.get("/api/v1/targets"))["data"]["activeTargets"]
            except (httpx.HTTPError, ValueError, KeyError) as err:
                targets, state = [], f"prometheus runs, its API does not answer: {err!r}"
            else:
                state = f"prometheus runs; {len(targets)} active target(s)"
            for t in targets:
                state += (
                    f"\n  target {t.get('scrapeUrl')}: health {t.get('health')}, last scrape"
                    f" {t.get('lastScrape')} ({t.get('lastScrapeDuration')} s), last error"
                    f" {t.get('lastError')!r}"
                )
        tail = self.log_path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        return state + f"\n  log ({self.log_path}), last lines:\n    " + "\n    ".join(tail)


@pytest.fixture
async def prometheus(tmp_path: Path) -> AsyncIterator[Prometheus]:
    """A Prometheus server scraping one target (the address the conductor's metrics are to be served on),
    ready to answer queries."""
    binary = shutil.which("prometheus")
    assert binary, (
        "prometheus is not installed: `make test` installs Debian's package (apt-get install prometheus)"
    )
    target = f"127.0.0.1:{free_port()}"
    config = tmp_path / "prometheus.yml"
    config.write_text(
        f"global: {{scrape_interval: {SCRAPE_SECONDS}s, scrape_timeout: {SCRAPE_SECONDS}s,"
        f" evaluation_interval: {SCRAPE_SECONDS}s}}\n"
        f"scrape_configs:\n  - job_name: conductor\n    static_configs: [{{targets: ['{target}']}}]\n"
    )
    api = f"127.0.0.1:{free_port()}"
    log_path = tmp_path / "prometheus.log"
    with log_path.open("w") as log:
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
    server = Prometheus(proc, f"http://{api}", target, log_path)
    try:
        await _wait_ready(server)
        yield server
    finally:
        stop_process(proc, timeout=20)


async def _wait_ready(server: Prometheus) -> None:
    """Until /-/ready answers 200 (TSDB opened, config loaded); fails at once if the process exits (a port
    taken between free_port() and its bind, a bad config)."""
    deadline = time.monotonic() + READY_SECONDS
    last = "no answer yet"
    while server.proc.poll() is None and time.monotonic() < deadline:
        try:
            async with httpx.AsyncClient(timeout=5) as http:
                response = await http.get(f"{server.api}/-/ready")
            if response.status_code == 200:
                return
            last = f"{response.status_code} {response.text.strip()[:200]}"
        except httpx.HTTPError as err:
            last = repr(err)
        await asyncio.sleep(POLL_SECONDS)
    pytest.fail(
        f"prometheus was not ready within {READY_SECONDS} s (/-/ready: {last})\n{await server.describe()}",
        pytrace=False,
    )


async def test_prometheus_counts_the_jobs_and_messages_it_scraped(
    client, intake_settings, start_conductor, prometheus
):
    settings = intake_settings.model_copy(
        update={"metrics_listen": prometheus.target, "metrics_jobs_gauge_seconds": 1}
    )
    keys = [fresh_key() for _ in range(TICKETS)]
    sqs = sqs_client(settings)
    for key in keys:
        sqs.send_message(QueueUrl=settings.sqs_queue_url, MessageBody=ticket_body(key))
    # A second copy of a ticket, taken while its job runs (as SQS may deliver one message twice): a duplicate.
    sqs.send_message(QueueUrl=settings.sqs_queue_url, MessageBody=ticket_body(keys[0]))
    sqs.send_message(QueueUrl=settings.sqs_queue_url, MessageBody="not json")
    await start_conductor(settings)
    for key in keys:
        try:
            result = await ticket_result(client, key, timeout=TICKET_SECONDS)
        except TimeoutError:
            pytest.fail(f"ticket {key}: its workflow did not end within {TICKET_SECONDS} s", pytrace=False)
        assert result.state == JobState.SUCCEEDED, (key, result)
    sqs.send_message(QueueUrl=settings.sqs_queue_url, MessageBody=ticket_body(keys[0]))  # after it ended

    intake = 'sum(conductor_intake_messages_total{{kind="{}", outcome="{}"}})'
    counted = {
        'sum(conductor_jobs_ended_total{kind="ticket", state="SUCCEEDED"})': TICKETS,
        intake.format("ticket", "started"): TICKETS,
        intake.format("ticket", "duplicate"): 2,
        intake.format("poison", "dead_lettered"): 1,
        'sum(conductor_job_duration_seconds_count{state="SUCCEEDED"})': TICKETS,
        # Each agent's heartbeats, as the gateway recorded them on its job.
        'sum(conductor_agent_heartbeats_total{outcome="recorded"}) >= bool 1': 1,
        # The gauge of open jobs on this conductor's task queue: a series per state, every job ended.
        "count(conductor_jobs)": len(JobState),
        'sum(conductor_jobs{state=~"QUEUED|LAUNCHING|RUNNING|PUBLISHING"})': 0,
    }
    await scraped(prometheus, counted, COUNTED_SECONDS)
    # The SDK's own metrics come through the same exporter (from the same scrape as the counts above).
    assert (await prometheus.query("sum(temporal_workflow_completed_total)") or 0) >= TICKETS


async def scraped(server: Prometheus, expected: dict[str, float], timeout: float) -> None:
    """Until every query answers its expected value; otherwise fail naming each query's last answer, every
    intake series Prometheus holds (a redelivered message shows as one more duplicate) and its state."""
    deadline = time.monotonic() + timeout
    while True:
        answers: dict[str, float | None | str] = {}
        for promql in expected:
            try:
                answers[promql] = await server.query(promql)
            except (httpx.HTTPError, ValueError, KeyError) as err:
                answers[promql] = f"query failed: {err!r}"
        if answers == expected:
            return
        if time.monotonic() >= deadline:
            break
        await asyncio.sleep(POLL_SECONDS)
    lines = [f"  {q}: {answers[q]!r}, expected {v}" for q, v in expected.items()]
    try:
        answer = await server.get("/api/v1/query", query="conductor_intake_messages_total")
        series = answer["data"]["result"]
        held = ", ".join(
            f"{s['metric'].get('kind')}/{s['metric'].get('outcome')}={s['value'][1]}" for s in series
        )
    except (httpx.HTTPError, ValueError, KeyError) as err:
        held = f"query failed: {err!r}"
    pytest.fail(
        f"Prometheus did not show the conductor's counts within {timeout:.0f} s:\n"
        + "\n".join(lines)
        + f"\n  intake series held: {held or 'none'}\n{await server.describe()}",
        pytrace=False,
    )
