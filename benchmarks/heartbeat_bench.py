"""#12 (a): 500 concurrent jobs whose light agents only heartbeat every 5 s, on one conductor: the
conductor's CPU seconds and peak RSS per 100 jobs, and false CRASHED, before and after the agent channel
went through Temporal, in the same run.

Each conductor is a real `conductor serve` process (its workflows, activities and gateway) on one
Temporal dev server, with the Fargate launcher on moto's ECS (moto's server, its own process): a launch
is a RunTask that runs nothing, and the bench's light agents (benchmarks/light_agents.py, all in this
process, each on its own connection) take each task's token from its overrides, as a container would.
With all agents handshaken and one beat period of warm-up, the conductor's CPU time (/proc/<pid>/stat)
and the dev server's are taken over `--seconds`; peak RSS is the conductor's VmHWM. Then every agent
reports (no bundle: the job ends NO_CHANGES) and each ticket's outcome is counted: a CRASHED job, or a
task launched beyond one per job (a relaunch), is a false positive, since every agent beat on time.

"before" is `--before` (default: the commit the channel merge 25e034d was made on, where a watcher
activity per job polled the job's files every 0.5 s and asked ECS whether its task lived), exported with
`git archive` and run with this venv; its gateway speaks the same Handshake, Heartbeat and UploadResult.
Both get the same settings (600 activity slots: the old watcher held one per running agent).
The bench stops by itself at `--time-limit`, saying in which phase.
"""

import argparse
import asyncio
import logging
import os
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import boto3
import requests
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError

from benchmarks.light_agents import Fleet
from benchmarks.results import record
from conductor_worker.config import Settings
from conductor_worker.intake.messages import parse_message
from conductor_worker.intake.ticket_start import start_ticket
from conductor_worker.process.client import connect
from conductor_worker.process.devserver import DevServer
from tests.git_helpers import make_bare_repo_from
from tests.helpers import EXAMPLES, free_port, moto_server_process, stop_process, ticket_body

REPO = Path(__file__).resolve().parent.parent
BEFORE_CHANNEL = "b78c3ed"  # first parent of 25e034d "Merge branch 'channel'"
REGION = "us-east-1"
SECRET = "bench-heartbeat-secret-" + "x" * 16
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class Phases:
    def __init__(self, limit: float) -> None:
        self.began = time.monotonic()
        self.limit = limit

    def say(self, text: str) -> None:
        print(f"heartbeats [{time.monotonic() - self.began:5.0f} s] {text}", flush=True)

    def left(self) -> float:
        return self.limit - (time.monotonic() - self.began)

    async def run(self, name: str, coro):
        self.say(name)
        try:
            return await asyncio.wait_for(coro, max(self.left(), 0.001))
        except TimeoutError:
            self.say(f"stopped: the time limit of {self.limit:.0f} s ran out in this phase: {name}")
            raise SystemExit(2) from None


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def status_kib(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    return 0


def server_pid(server: DevServer) -> int:
    return server._process.pid  # the `temporal server start-dev` process itself


def export_commit(rev: str, dest: Path) -> Path:
    """The code at `rev` (git archive), with its gRPC modules generated."""
    archive = dest.with_suffix(".tar")
    subprocess.run(["git", "-C", str(REPO), "archive", "-o", str(archive), rev], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-I",
            ".",
            "--python_out=.",
            "--grpc_python_out=.",
            "proto/conductor/v1/agent.proto",
        ],
        cwd=dest,
        check=True,
    )
    return dest


def prepare_ecs(endpoint: str, clusters: list[str]) -> tuple[list[str], list[str]]:
    """Clusters, a task definition, a subnet and a group; tasks stay RUNNING until stopped."""
    requests.post(
        f"{endpoint}/moto-api/state-manager/set-transition",
        json={"model_name": "ecs::task", "transition": {"progression": "manual", "times": 1000000}},
        timeout=10,
    ).raise_for_status()
    ec2 = boto3.client("ec2", endpoint_url=endpoint, region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/20")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="agents", Description="agents", VpcId=vpc)["GroupId"]
    ecs = boto3.client("ecs", endpoint_url=endpoint, region_name=REGION)
    for cluster in clusters:
        ecs.create_cluster(clusterName=cluster)
    ecs.register_task_definition(
        family="agent",
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="512",
        memory="1024",
        containerDefinitions=[{"name": "agent", "image": "acme/agent:1", "memory": 1024}],
    )
    return [subnet], [group]


def conductor(code: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "conductor_worker", "serve"],
        cwd=code,
        env={**os.environ, "PYTHONPATH": str(code), **env},
        stdin=subprocess.DEVNULL,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


async def listening(port: int, proc: subprocess.Popen, log: Path) -> None:
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"conductor exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            await asyncio.sleep(0.2)


async def outcome(client, workflow_id: str) -> str:
    try:
        await client.get_workflow_handle(workflow_id).result()
        return "SUCCEEDED"
    except WorkflowFailureError as err:
        cause = err.cause
        while cause is not None and not isinstance(cause, ApplicationError):
            cause = cause.__cause__
        return cause.type if isinstance(cause, ApplicationError) and cause.type else "failed"


async def run_version(name, code, client, server, endpoint, ecs, network, args, work, phases):
    """One conductor under the load; returns its figures. Its repositories are its own: their claim
    workflows run on its task queue."""
    subnets, groups = network
    state, port, queue = work / f"state-{name}", free_port(), f"bench-hb-{name}-{uuid.uuid4().hex[:6]}"
    state.mkdir()
    # Jobs spread over `--repos` repositories by project: each repository's claims go through one
    # workflow, one at a time, which at 500 jobs on one repository made the ramp-up the bench's bottleneck.
    routes = work / f"routes-{name}.yaml"
    rules = [
        f"  - project: HB{r}\n"
        f"    route: {{repo_url: {make_bare_repo_from(EXAMPLES / 'sample-repo', work / f'{name}-{r}.git')},"
        f" name: greeter-{r}, max_concurrent_jobs: {args.jobs}}}\n"
        for r in range(args.repos)
    ]
    routes.write_text("tickets:\n" + "".join(rules))
    env = {
        "CONDUCTOR_TEMPORAL_ADDRESS": server.address,
        "CONDUCTOR_TASK_QUEUE": queue,
        "CONDUCTOR_STATE_DIR": str(state),
        "CONDUCTOR_GATEWAY_LISTEN": f"127.0.0.1:{port}",
        "CONDUCTOR_GATEWAY_PUBLIC_ADDRESS": f"127.0.0.1:{port}",
        "CONDUCTOR_ROUTES_FILE": str(routes),
        "CONDUCTOR_TOKEN_SECRET": SECRET,
        "CONDUCTOR_LAUNCHER": "fargate",
        "CONDUCTOR_ECS_CLUSTER": f"agents-{name}",
        "CONDUCTOR_ECS_TASK_DEFINITION": "agent",
        "CONDUCTOR_ECS_SUBNETS": ",".join(subnets),
        "CONDUCTOR_ECS_SECURITY_GROUPS": ",".join(groups),
        "CONDUCTOR_AWS_REGION": REGION,
        "CONDUCTOR_AWS_ENDPOINT_URL": endpoint,
        "CONDUCTOR_HEARTBEAT_INTERVAL_SECONDS": str(args.beat),
        "CONDUCTOR_MAX_CONCURRENT_ACTIVITIES": str(args.jobs + 100),
        "CONDUCTOR_TICKET_POLICY__RETRY_WINDOW_SECONDS": "0",
    }
    log = work / f"conductor-{name}.log"
    proc = conductor(code, env, log)
    fleet, stop = Fleet(ecs, f"agents-{name}", args.beat), asyncio.Event()
    discovery, tickets = None, []
    try:
        await phases.run(f"{name}: conductor starting ({code})", listening(port, proc, log))
        await asyncio.sleep(2)  # the worker's first polls
        idle_mib = status_kib(proc.pid, "VmRSS") / 1024
        prefix = "".join(chr(ord("A") + int(c, 16) % 26) for c in uuid.uuid4().hex[:4])
        tickets = [
            parse_message(ticket_body(f"{prefix}-{i + 1}", project={"key": f"HB{i % args.repos}"}))
            for i in range(args.jobs)
        ]

        async def start_all() -> None:
            gate = asyncio.Semaphore(20)

            async def one(ticket) -> None:
                async with gate:
                    await start_ticket(client, queue, ticket)

            await asyncio.gather(*(one(t) for t in tickets))

        await phases.run(f"{name}: starting {args.jobs} tickets", start_all())
        discovery = asyncio.create_task(fleet.discover(stop))

        async def all_handshaken() -> None:
            ticks = 0
            while fleet.stats.handshaken < args.jobs:
                await asyncio.sleep(1)
                ticks += 1
                if ticks % 30 == 0:
                    phases.say(
                        f"{name}: {fleet.stats.handshaken} handshaken, {fleet.stats.tasks_seen} launched"
                    )

        await phases.run(f"{name}: waiting for {args.jobs} handshakes", all_handshaken())
        phases.say(f"{name}: all handshaken; one beat period of warm-up")
        await asyncio.sleep(args.beat)
        cpu0, temporal0, beats0, t0 = (
            cpu_seconds(proc.pid),
            cpu_seconds(server_pid(server)),
            fleet.stats.beats,
            time.monotonic(),
        )
        phases.say(f"{name}: measuring for {args.seconds} s")
        await asyncio.sleep(args.seconds)
        window = time.monotonic() - t0
        figures = dict(
            cpu=cpu_seconds(proc.pid) - cpu0,
            temporal_cpu=cpu_seconds(server_pid(server)) - temporal0,
            hwm_mib=status_kib(proc.pid, "VmHWM") / 1024,
            rss_mib=status_kib(proc.pid, "VmRSS") / 1024,
            idle_mib=idle_mib,
            window=window,
            beats=fleet.stats.beats - beats0,
        )
        await phases.run(
            f"{name}: every agent reports its result", fleet.finish(timeout=max(phases.left(), 1))
        )
        outcomes = await phases.run(
            f"{name}: waiting for {args.jobs} tickets to end",
            asyncio.gather(*(outcome(client, f"ticket/jira/{t.key}") for t in tickets)),
        )
        stop.set()
        stats = fleet.stats
        figures.update(
            outcomes=Counter(outcomes),
            relaunched=stats.tasks_seen - args.jobs,
            beat_errors=dict(stats.beat_errors),
            result_errors=dict(stats.result_errors),
            ended_by_conductor=stats.ended_by_conductor,
            beat_p99=sorted(stats.beat_seconds)[int(len(stats.beat_seconds) * 0.99)]
            if stats.beat_seconds
            else 0,
        )
        return figures
    except BaseException:
        if tickets:
            wid = f"ticket/jira/{tickets[0].key}"
            try:
                described = await client.get_workflow_handle(wid).describe()
                print(f"{name}: {wid} is {described.status.name} on {described.task_queue}", flush=True)
            except Exception as err:  # only a diagnosis
                print(f"{name}: {wid}: {err!r}", flush=True)
        print(
            f"{name}: the conductor's log ends with:\n{log.read_text(errors='replace')[-3000:]}", flush=True
        )
        raise
    finally:
        stop.set()
        if discovery is not None:
            discovery.cancel()
        stop_process(proc, timeout=30)


def describe(name: str, f: dict, jobs: int) -> None:
    per100 = 100 / jobs
    print(
        f"{name:6}: conductor {f['cpu']:.1f} CPU s in {f['window']:.0f} s ({f['cpu'] * per100:.2f} per 100 jobs,"
        f" {100 * f['cpu'] / f['window']:.0f} % of a core); peak RSS {f['hwm_mib']:.0f} MiB"
        f" ({f['hwm_mib'] * per100:.0f} per 100 jobs), RSS now {f['rss_mib']:.0f} MiB,"
        f" idle before the jobs {f['idle_mib']:.0f} MiB;"
        f" Temporal dev server {f['temporal_cpu']:.1f} CPU s; {f['beats']} beats answered in the window"
        f" ({1000 * f['cpu'] / max(f['beats'], 1):.1f} conductor CPU ms each)"
        f" (p99 {1000 * f['beat_p99']:.0f} ms over the run); outcomes {dict(f['outcomes'])};"
        f" relaunched {f['relaunched']}; beat errors {f['beat_errors']}; result errors {f['result_errors']}"
    )


async def main(args) -> None:
    logging.basicConfig(level=logging.WARNING)
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION=REGION)
    phases = Phases(args.time_limit)
    with tempfile.TemporaryDirectory() as tmp, moto_server_process() as endpoint:
        work = Path(tmp)
        versions = []
        if args.before:
            try:
                versions.append(("before", export_commit(args.before, work / "before")))
            except (subprocess.CalledProcessError, OSError) as err:
                phases.say(f"no 'before' run: cannot export {args.before}: {err}")
        versions.append(("after", REPO))
        server = DevServer(work / "temporal", port=free_port(), ui_port=free_port())
        (work / "temporal").mkdir()
        server.start()
        try:
            network = prepare_ecs(endpoint, [f"agents-{name}" for name, _ in versions])
            ecs = boto3.client("ecs", endpoint_url=endpoint, region_name=REGION)
            client = await connect(Settings(temporal_address=server.address, state_dir=work))
            results = {}
            for name, code in versions:
                results[name] = await run_version(
                    name, code, client, server, endpoint, ecs, network, args, work, phases
                )
                describe(name, results[name], args.jobs)
        finally:
            server.stop()
    report(results, args)


def report(results: dict, args) -> None:
    after, before = results["after"], results.get("before")
    per100 = 100 / args.jobs
    false = lambda f: f["outcomes"].get("CRASHED", 0)  # noqa: E731
    what = f"{args.jobs} jobs, a beat every {args.beat} s, {args.seconds} s window"
    crashed = f"{false(after)} CRASHED, {after['relaunched']} relaunched of {args.jobs}"
    cpu = (
        f"{after['cpu'] * per100:.2f} CPU s per 100 jobs ({what}; {crashed};"
        f" Temporal {after['temporal_cpu']:.1f} s; {after['beats']} beats answered,"
        f" {1000 * after['cpu'] / max(after['beats'], 1):.1f} ms each)"
    )
    rss = (
        f"{after['hwm_mib'] * per100:.0f} MiB per 100 jobs ({after['hwm_mib']:.0f} MiB peak;"
        f" {after['idle_mib']:.0f} MiB idle before the jobs)"
    )
    if before is None:
        print("no 'before' run: the figures stand alone")
        return
    record(
        "500 light agents: conductor CPU" if args.jobs == 500 else f"{args.jobs} light agents: conductor CPU",
        cpu,
        f"{before['cpu'] * per100:.2f} CPU s before the channel ({args.before}, file polling;"
        f" {false(before)} CRASHED, {before['relaunched']} relaunched; Temporal {before['temporal_cpu']:.1f} s;"
        f" {before['beats']} beats answered, {1000 * before['cpu'] / max(before['beats'], 1):.1f} ms each)",
        after["cpu"] / before["cpu"],
        "lower is better",
    )
    per_beat = {k: 1000 * f["cpu"] / max(f["beats"], 1) for k, f in results.items()}
    record(
        "light agents: conductor CPU per answered heartbeat",
        f"{per_beat['after']:.1f} ms ({after['beats']} beats answered in the window)",
        f"{per_beat['before']:.1f} ms before ({before['beats']} beats answered)",
        per_beat["after"] / per_beat["before"],
        "lower is better",
    )
    record(
        "light agents: conductor peak RSS",
        rss,
        f"{before['hwm_mib'] * per100:.0f} MiB per 100 jobs before ({before['hwm_mib']:.0f} MiB;"
        f" {before['idle_mib']:.0f} MiB idle)",
        after["hwm_mib"] / before["hwm_mib"],
        "lower is better",
    )
    print(
        f"after/before: CPU {after['cpu'] / before['cpu']:.2f} x, peak RSS {after['hwm_mib'] / before['hwm_mib']:.2f} x"
    )
    print(
        f"false positives: after {crashed}; before {false(before)} CRASHED, {before['relaunched']} relaunched"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=500, help="concurrent jobs (light agents)")
    parser.add_argument("--seconds", type=int, default=60, help="measuring window, all agents running")
    parser.add_argument("--beat", type=int, default=5, help="heartbeat interval, seconds")
    parser.add_argument("--repos", type=int, default=10, help="repositories the jobs are spread over")
    parser.add_argument("--before", default=BEFORE_CHANNEL, help="commit to run as 'before'; empty: none")
    parser.add_argument("--time-limit", type=float, default=2400, help="the whole bench, seconds")
    args = parser.parse_args()
    if not (1 <= args.jobs <= 2000 and 1 <= args.seconds <= 3600 and 1 <= args.beat <= 60):
        parser.error("--jobs 1-2000, --seconds 1-3600, --beat 1-60")
    if not 1 <= args.repos <= 100:
        parser.error("--repos 1-100")
    asyncio.run(main(args))
