"""Issue #12's Must-show: two conductor replicas with private state directories, sharing only Temporal and
S3 (moto's server), serve 20 tickets while one of them is SIGKILLed and restarted three times.

Agents dial both gateways (`ipv4:a,b`, gRPC's round robin): any call may reach either replica, so a job's
handshake, result and publish happen wherever they land, and the logs show it.
"""

import asyncio
import os
import random
import re
import signal
import time
from collections import defaultdict

import boto3
import pytest
from pydantic import SecretStr

from tests.github_standin import GithubStandin
from tests.helpers import count_workflows, free_port, ticket_body, wait_for
from tests.scale_helpers import assert_one_branch_and_pr_each, conductor_process, send_all

REPO = "acme/greeter"
TICKETS = 20
KILLS = 3
SECRET = "share-nothing-secret-" + "x" * 16
BUCKET = "conductor-shared"
_SAID = re.compile(r"agent (handshake|result): job/ticket/jira/(\S+) attempt (\d+)")
_PUSHED = re.compile(r"pushed conductor/(\S+) at ")


def who_did_what(logs: dict[str, str]) -> dict[str, dict[str, set[str]]]:
    """ticket key -> {"handshake" | "result" | "publish": the replicas that logged it}."""
    seen: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for replica, text in logs.items():
        for what, key, _ in _SAID.findall(text):
            seen[key][what].add(replica)
        for key in _PUSHED.findall(text):
            seen[key]["publish"].add(replica)
    return seen


@pytest.mark.timeout(420)
async def test_20_tickets_on_two_replicas_sharing_only_temporal_and_s3_survive_3_kills(
    client, intake_settings, tmp_path, sample_remote
):
    boto3.client("s3", endpoint_url=intake_settings.aws_endpoint_url, region_name="us-east-1").create_bucket(
        Bucket=BUCKET
    )
    routes = tmp_path / "replica-routes.yaml"
    routes.write_text(
        "tickets:\n  - route: {"
        f"repo_url: {sample_remote}, publisher: github, github_repo: {REPO}, name: {REPO}, "
        "max_concurrent_jobs: 50}\n"
    )
    names = ["a", "b"]
    ports = {name: free_port() for name in names}
    replicas = {
        name: intake_settings.model_copy(
            update={"routes_file": routes, "state_dir": tmp_path / name, "token_secret": SecretStr(SECRET)}
        )
        for name in names
    }
    logs = {name: tmp_path / f"{name}.log" for name in names}
    prefix = f"R{random.randrange(100, 999)}"
    keys = [f"{prefix}-{n}" for n in range(1, TICKETS + 1)]
    jobs = f"WorkflowType = 'AgentJobWorkflow' AND TicketKey STARTS_WITH '{prefix}-'"

    with GithubStandin(token="gh-secret", repos=[REPO]) as github:
        env = {
            "CONDUCTOR_GITHUB_API_URL": github.base_url,
            "CONDUCTOR_GITHUB_TOKEN": "gh-secret",
            "CONDUCTOR_BLOB_STORE": "s3",
            "CONDUCTOR_BLOB_S3_BUCKET": BUCKET,
            "CONDUCTOR_LOG_STORE": "s3",
            "CONDUCTOR_LOGS_S3_BUCKET": BUCKET,
            "CONDUCTOR_GATEWAY_PUBLIC_ADDRESS": "ipv4:" + ",".join(f"127.0.0.1:{p}" for p in ports.values()),
            "CONDUCTOR_HEARTBEAT_INTERVAL_SECONDS": "2",
        }

        def start(name: str):
            return conductor_process(replicas[name], ports[name], logs[name], env)

        procs = {name: start(name) for name in names}
        kills = []
        try:
            send_all(replicas["a"], [ticket_body(key) for key in keys])
            for _ in range(KILLS):
                await asyncio.sleep(random.uniform(3, 9))  # intake, launches, agents and publishing get hit
                victim = random.choice(names)
                os.killpg(
                    procs[victim].pid, signal.SIGKILL
                )  # the replica alone: agents have their own sessions
                procs[victim].wait()
                kills.append(f"{victim} at {time.strftime('%H:%M:%S')}")
                procs[victim] = start(victim)

            async def all_done():
                closed = await count_workflows(client, f"{jobs} AND ExecutionStatus != 'Running'")
                return closed if closed >= TICKETS else None

            await wait_for(all_done, timeout=300)
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(timeout=60)

        completed = await count_workflows(client, f"{jobs} AND ExecutionStatus = 'Completed'")
        said = {name: log.read_text() for name, log in logs.items()}
        assert completed == TICKETS, "\n".join(text[-3000:] for text in said.values())
        pulls = github.pulls(REPO)

    prs = assert_one_branch_and_pr_each(pulls, sample_remote, prefix, keys)
    seen = who_did_what(said)
    crossed = sorted(
        key for key in keys if len(seen[key]["handshake"] | seen[key]["result"] | seen[key]["publish"]) > 1
    )
    split = [
        key
        for key in keys
        if seen[key]["handshake"] and seen[key]["result"] and seen[key]["handshake"] != seen[key]["result"]
    ]
    print(
        f"\n{TICKETS} jobs, {prs} PRs; killed {', '.join(kills)}; {len(crossed)} jobs served by both "
        f"replicas, {len(split)} with handshake and result on different ones"
    )
    assert split, "no job had its handshake and its result on different replicas"
    # No bundle or task file on a replica's own disk but in its local agents' work directories.
    for name in names:
        kept = [*(tmp_path / name).rglob("*.bundle"), *(tmp_path / name).rglob("prompt.md")]
        assert not [path for path in kept if not any(part.startswith("workdir-") for part in path.parts)]
