"""P3, an alarm storm: 10,000 alarms over 100 accounts through SQS -> the intake -> the real
IncidentChainWorkflow on a dev server -> exactly the jobs the pure chain rule predicts.

Figure: alarms/s through the intake (receive, parse, signal-with-start, delete) while the real workflows
and a recording worker (activities/recorder.py in place of launcher and publishers: no agent starts) run
in the same process, as a conductor runs them. Raw baseline, same run and same server: signal-with-start
of the same 10,000 alarms with as many calls in flight as the intake keeps (pollers x 10), to workflow ids
that no worker polls; and, since moto's SQS is slow on a busy machine, the queue alone (receive and delete
of the same bodies). Then the jobs: counted once every account's workflow is quiet, against the number
`workflows/chaining.py` predicts for the same alarms.

moto's server runs in a process of its own (in this process it competed for the GIL with the worker:
the 10,000 sends alone ran past 16 minutes), and the alarms are sent while the intake consumes them, at
most `--backlog` waiting: moto's cost per message grows with its queue's depth (benchmarks/raw_sqs.py),
real SQS's does not. The raw SQS baseline is fed the same way. The bench prints each phase as it starts
and stops by itself at `--time-limit`, saying which phase it was in.
"""

import argparse
import asyncio
import logging
import os
import random
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

import boto3
from temporalio.common import WorkflowIDConflictPolicy

from activities.recorder import Recorder
from benchmarks.raw_sqs import Feeder, consume_while_feeding, raw_sqs_rate
from benchmarks.results import record
from conductor_worker.config import Settings
from conductor_worker.intake.messages import parse_message
from conductor_worker.intake.sqs import SqsIntake
from conductor_worker.process.client import connect
from conductor_worker.process.devserver import DevServer
from conductor_worker.process.worker import build_recording_worker
from contracts.alarms import AccountChains, Alarm, PlacementKind
from contracts.incidents import IncidentChainInput
from contracts.policies import JobPolicy
from tests.git_helpers import make_bare_repo_from
from tests.helpers import EXAMPLES, free_port, moto_server_process
from tests.scale_helpers import T0, alarm_body
from workflows.chaining import place_alarm
from workflows.incident_chain import IncidentChainWorkflow

RAW_SQS_SAMPLE = 1000
DEFAULT_TIME_LIMIT = 1800
DEFAULT_BACKLOG = 200


class Phases:
    """Each phase printed as it starts (seconds since the bench began), all of them under one time limit."""

    def __init__(self, limit: float) -> None:
        self.began = time.monotonic()
        self.limit = limit

    def say(self, text: str) -> None:
        print(f"P3 [{time.monotonic() - self.began:6.0f} s] {text}", flush=True)

    async def run(self, name: str, coro):
        self.say(name)
        left = self.limit - (time.monotonic() - self.began)
        try:
            return await asyncio.wait_for(coro, max(left, 0.001))
        except TimeoutError:
            self.say(f"stopped: the time limit of {self.limit:.0f} s ran out in this phase: {name}")
            raise SystemExit(2) from None


def storm(accounts: int, per_account: int, chains: int) -> list[str]:
    """Per account, `chains` bursts 3 h apart (more than the 1 h window, so they never join), each of
    alarms 1 minute apart; all within max_age + window, so nothing is pruned whatever the arrival order."""
    per_chain = per_account // chains
    bodies = []
    for a in range(accounts):
        account = f"{700000000000 + a}"
        for i in range(per_account):
            at = T0 + timedelta(hours=3 * (i // per_chain)) + timedelta(minutes=i % per_chain)
            bodies.append(alarm_body(account, at, f"alarm-{i % 3}"))
    return bodies


def predicted_jobs(alarms: list[Alarm], settings: Settings) -> int:
    """The pure rule over each account's alarms: every chain opened starts one job (recorded jobs succeed)."""
    states: dict[str, AccountChains] = {}
    opened = 0
    for alarm in alarms:
        state = states.setdefault(alarm.account, AccountChains(account=alarm.account))
        opened += place_alarm(state, alarm, settings.chain_policy()).kind == PlacementKind.OPENED
    return opened


async def raw_signal_with_start(client, alarms: list[Alarm], settings: Settings, in_flight: int) -> float:
    gate = asyncio.Semaphore(in_flight)
    queue = f"bench-raw-{uuid.uuid4().hex[:6]}"  # no worker polls it: the server's cost alone

    async def signal(alarm: Alarm) -> None:
        async with gate:
            await client.start_workflow(
                IncidentChainWorkflow.run,
                IncidentChainInput(account=alarm.account, policy=settings.chain_policy(), task_queue=queue),
                id=f"bench-raw/{alarm.account}",
                task_queue=queue,
                start_signal="alarm",
                start_signal_args=[alarm],
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            )

    began = time.perf_counter()
    await asyncio.gather(*(signal(alarm) for alarm in alarms))
    return len(alarms) / (time.perf_counter() - began)


async def intake_rate(client, settings: Settings, sqs, bodies: list[str], backlog: int, say) -> float:
    """All the bodies through the intake as it runs in production, sent meanwhile (at most `backlog` waiting);
    the clock starts with the first send."""
    intake = SqsIntake(client, settings, sqs)
    feeder = Feeder(sqs, settings.sqs_queue_url, bodies, backlog)
    began, handled, finished = time.perf_counter(), 0, 0.0

    async def poller() -> None:
        nonlocal handled, finished
        while handled < len(bodies):
            got = await intake.poll_once()
            handled += got
            feeder.consumed(got)
            finished = time.perf_counter()
            if got and handled // 1000 != (handled - got) // 1000:
                say(f"  {handled} alarms handled, {handled / (finished - began):.1f}/s")

    async def consume() -> None:
        await asyncio.gather(*(poller() for _ in range(settings.sqs_pollers)))

    await consume_while_feeding(feeder, consume)
    return len(bodies) / (finished - began)


async def jobs_when_quiet(recorder: Recorder, expected: int, limit: float) -> tuple[int, float]:
    """Distinct jobs launched, once the count reached `expected` and stayed there 3 s (or at `limit`)."""
    began = time.perf_counter()
    last, since = -1, time.perf_counter()
    while time.perf_counter() - began < limit:
        count = len({launch.job_id for launch in recorder.launches})
        if count != last:
            last, since = count, time.perf_counter()
        elif count >= expected and time.perf_counter() - since > 3:
            break
        await asyncio.sleep(0.5)
    return last, time.perf_counter() - began


async def main(accounts: int, per_account: int, chains: int, time_limit: float, backlog: int) -> None:
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench")
    phases = Phases(time_limit)
    bodies = storm(accounts, per_account, chains)
    random.Random(9).shuffle(bodies)
    with tempfile.TemporaryDirectory() as tmp_name, moto_server_process() as endpoint:
        tmp = Path(tmp_name)
        server = DevServer(tmp, port=free_port(), ui_port=free_port())
        server.start()
        try:
            sqs = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1")
            remote = make_bare_repo_from(EXAMPLES / "sample-repo", tmp / "remote.git")
            routes = tmp / "routes.yaml"
            routes.write_text(
                f'accounts:\n  - account: "*"\n    route: {{repo_url: {remote}, name: greeter,'
                " max_concurrent_jobs: 1000}\n"
            )
            settings = Settings(
                temporal_address=server.address,
                task_queue="bench-alarms",
                state_dir=tmp / "state",
                routes_file=routes,
                sqs_queue_url=sqs.create_queue(QueueName="bench-alarms")["QueueUrl"],
                aws_endpoint_url=endpoint,
                sqs_wait_seconds=1,
                incident_policy=JobPolicy(retry_window_seconds=0),
            )
            alarms = [alarm for alarm in map(parse_message, bodies) if isinstance(alarm, Alarm)]
            expected = predicted_jobs(alarms, settings)
            client = await connect(settings)
            raw = await phases.run(
                f"raw signal-with-start of the {len(alarms)} alarms",
                raw_signal_with_start(client, alarms, settings, in_flight=settings.sqs_pollers * 10),
            )
            phases.say(f"raw signal-with-start {raw:.1f}/s")
            raw_queue = sqs.create_queue(QueueName="bench-alarms-raw")["QueueUrl"]
            # A rate, so a sample will do (moto's queue scans every message it holds at each receive).
            sample = bodies[:RAW_SQS_SAMPLE]
            sqs_raw = await phases.run(
                f"raw SQS: {len(sample)} bodies sent (at most {backlog} waiting), received and deleted",
                raw_sqs_rate(sqs, raw_queue, sample, settings.sqs_pollers, backlog),
            )
            phases.say(f"raw SQS {sqs_raw:.1f}/s")
            recorder = Recorder()
            async with build_recording_worker(client, settings, recorder):
                rate = await phases.run(
                    f"{len(bodies)} alarms sent (SendMessageBatch, at most {backlog} waiting) and through"
                    f" the intake ({settings.sqs_pollers} pollers)",
                    intake_rate(client, settings, sqs, bodies, backlog, phases.say),
                )
                phases.say(f"intake {rate:.1f}/s")
                jobs, settle = await phases.run(
                    f"waiting for the {expected} jobs", jobs_when_quiet(recorder, expected, limit=300)
                )
        finally:
            server.stop()
    n = len(bodies)
    print(
        f"raw signal-with-start, {settings.sqs_pollers * 10} in flight:        {raw:7.1f} alarms/s  (n={n})"
    )
    print(
        f"raw SQS receive+delete of the first {min(n, RAW_SQS_SAMPLE)} bodies, {settings.sqs_pollers} pollers:"
        f" {sqs_raw:7.1f} /s"
    )
    print(
        f"P3 alarms through SQS + intake + chains, {accounts} accounts: {rate:7.1f} alarms/s"
        f" = {rate / raw:.2f} x raw, {rate / sqs_raw:.2f} x raw SQS; jobs {jobs} (the chain rule predicts {expected}),"
        f" all in {settle:.0f} s after the last alarm"
    )
    assert jobs == expected, f"{jobs} jobs, the chain rule predicts {expected}"
    record(
        "P3 alarm storm",
        f"{rate:.1f} alarms/s ({n} alarms, {accounts} accounts, {jobs} jobs = rule's {expected})",
        f"{raw:.1f}/s raw signal-with-start ({sqs_raw:.1f}/s raw SQS: {rate / sqs_raw:.2f} x)",
        rate / raw,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, default=100)
    parser.add_argument("--per-account", type=int, default=100, help="alarms per account")
    parser.add_argument("--chains", type=int, default=2, help="chains per account (one job each)")
    parser.add_argument(
        "--time-limit", type=float, default=DEFAULT_TIME_LIMIT, help="seconds; past it the bench stops"
    )
    parser.add_argument(
        "--backlog", type=int, default=DEFAULT_BACKLOG, help="alarms waiting in the queue at most"
    )
    args = parser.parse_args()
    asyncio.run(main(args.accounts, args.per_account, args.chains, args.time_limit, args.backlog))
