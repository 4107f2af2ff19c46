"""Scheduling on real parts at the issue's scale: dev server, moto SQS, git, real agent subprocesses."""

import json
import os
import random
import signal
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from contracts.ids import account_workflow_id
from tests.git_helpers import git
from tests.helpers import EXAMPLES, count_workflows, queue_depth, sqs_client, ticket_body, wait_for
from workflows.incident_chain import IncidentChainWorkflow

T0 = datetime(2026, 5, 12, 20, 0, tzinfo=UTC)
EVENT = json.loads((EXAMPLES / "alarms" / "eventbridge-alarm.json").read_text())


def alarm_body(account: str, at: datetime, name: str) -> str:
    """The EventBridge alarm fixture for another account, alarm and time."""
    event = json.loads(json.dumps(EVENT))
    stamp = at.strftime("%Y-%m-%dT%H:%M:%S.000+0000")
    event.update(account=account, id=f"{account}-{name}-{stamp}", time=at.strftime("%Y-%m-%dT%H:%M:%SZ"))
    event["detail"]["alarmName"] = name
    event["detail"]["state"]["timestamp"] = stamp
    return json.dumps(event)


def storm(accounts: list[str]) -> list[str]:
    """10 ALARMs per account inside one hour, a few alarm names: each account's alarms form one chain."""
    return [
        alarm_body(account, T0 + timedelta(minutes=6 * i), f"alarm-{i % 3}")
        for account in accounts
        for i in range(10)
    ]


def send_all(settings, bodies: list[str]) -> None:
    sqs = sqs_client(settings)
    for start in range(0, len(bodies), 10):
        entries = [{"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies[start : start + 10])]
        assert not sqs.send_message_batch(QueueUrl=settings.sqs_queue_url, Entries=entries).get("Failed")


def scale_settings(intake_settings, tmp_path: Path, sample_remote: Path):
    routes = tmp_path / "scale-routes.yaml"
    routes.write_text(
        f"tickets:\n  - route: {{repo_url: {sample_remote}, name: greeter}}\n"
        f'accounts:\n  - account: "*"\n    route: {{repo_url: {sample_remote}, name: greeter}}\n'
    )
    # Default 5 s heartbeats: on 2 busy cores a 1 s beat could be missed and fail a healthy job.
    return intake_settings.model_copy(
        update={"routes_file": routes, "heartbeat_interval_seconds": 5, "max_concurrent_activities": 24}
    )


def launches(state_dir: Path) -> list[str]:
    return sorted(p.parent.parent.name for p in state_dir.glob("jobs/*/attempt-*/agent.json"))


def new_accounts(n: int) -> list[str]:
    return [str(random.randrange(10**11, 10**12)) for _ in range(n)]


async def finished_jobs(client, query: str, expected: int) -> int:
    done = await count_workflows(
        client, f"WorkflowType = 'AgentJobWorkflow' AND {query} AND ExecutionStatus != 'Running'"
    )
    return done if done >= expected else 0


@pytest.mark.timeout(300)
async def test_100_alarms_across_10_accounts_make_10_jobs(
    client, intake_settings, start_conductor, tmp_path, sample_remote
):
    settings = scale_settings(intake_settings, tmp_path, sample_remote)
    accounts = new_accounts(10)
    bodies = storm(accounts)
    random.shuffle(bodies)
    await start_conductor(settings)
    send_all(settings, bodies)

    in_accounts = "AwsAccount IN (" + ", ".join(f"'{a}'" for a in accounts) + ")"
    assert await wait_for(lambda: finished_jobs(client, in_accounts, 10), timeout=240) == 10
    for account in accounts:
        status = await client.get_workflow_handle(account_workflow_id(account)).query(
            IncidentChainWorkflow.status
        )
        assert [(c.alarm_count, c.jobs_started) for c in status.chains.chains] == [(10, 1)]
    assert len(launches(settings.state_dir)) == 10
    assert (
        await count_workflows(
            client, f"WorkflowType = 'AgentJobWorkflow' AND {in_accounts} AND ExecutionStatus = 'Completed'"
        )
        == 10
    )
    branches = git(
        "for-each-ref", "--format=%(refname:short)", "refs/heads/conductor/", cwd=sample_remote
    ).split()
    assert sorted(b.split("-")[1] for b in branches) == sorted(accounts)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def conductor_process(settings, gateway_port: int, log: Path) -> subprocess.Popen:
    """`conductor serve` as its own process, so it can be killed with SIGKILL."""
    env = {
        **os.environ,
        "CONDUCTOR_TEMPORAL_ADDRESS": settings.temporal_address,
        "CONDUCTOR_TASK_QUEUE": settings.task_queue,
        "CONDUCTOR_STATE_DIR": str(settings.state_dir),
        "CONDUCTOR_GATEWAY_LISTEN": f"127.0.0.1:{gateway_port}",
        "CONDUCTOR_ROUTES_FILE": str(settings.routes_file),
        "CONDUCTOR_SQS_QUEUE_URL": settings.sqs_queue_url,
        "CONDUCTOR_AWS_ENDPOINT_URL": settings.aws_endpoint_url,
        "CONDUCTOR_SQS_WAIT_SECONDS": "1",
        # Messages received by the killed process come back quickly.
        "CONDUCTOR_SQS_VISIBILITY_TIMEOUT_SECONDS": "10",
        "CONDUCTOR_HEARTBEAT_INTERVAL_SECONDS": "5",
        "CONDUCTOR_MAX_CONCURRENT_ACTIVITIES": "24",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "conductor_worker", "serve"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


@pytest.mark.timeout(900)
@pytest.mark.parametrize("kill", [False, True], ids=["uninterrupted", "kill-9-half-way"])
async def test_600_tickets_for_200_keys_and_100_alarms_make_210_jobs(
    client, intake_settings, tmp_path, sample_remote, kill
):
    """600 ticket messages for 200 keys and 100 alarms for 10 accounts, shuffled; optionally SIGKILL mid-way."""
    settings = scale_settings(intake_settings, tmp_path, sample_remote)
    prefix = f"K{random.randrange(100, 999)}"
    tickets = [ticket_body(f"{prefix}-{k}") for k in range(1, 201) for _ in range(3)]
    accounts = new_accounts(10)
    bodies = tickets + storm(accounts)
    random.shuffle(bodies)
    send_all(settings, bodies)
    port, log = free_port(), tmp_path / "conductor.log"
    ticket_jobs = f"WorkflowType = 'AgentJobWorkflow' AND TicketKey STARTS_WITH '{prefix}-'"

    first = second = conductor_process(settings, port, log)
    try:
        if kill:
            await wait_for(lambda: _at_least(client, ticket_jobs, 100), timeout=300)
            os.killpg(first.pid, signal.SIGKILL)  # the conductor alone: agents run in sessions of their own
            first.wait()
            second = conductor_process(settings, port, log)
        in_accounts = "AwsAccount IN (" + ", ".join(f"'{a}'" for a in accounts) + ")"
        assert (
            await wait_for(
                lambda: finished_jobs(client, f"TicketKey STARTS_WITH '{prefix}-'", 200), timeout=600
            )
            == 200
        )
        assert await wait_for(lambda: finished_jobs(client, in_accounts, 10), timeout=120) == 10
    finally:
        for proc in {first, second}:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=60)

    failed = await count_workflows(client, f"{ticket_jobs} AND ExecutionStatus != 'Completed'")
    assert failed == 0, log.read_text()[-3000:]
    assert (
        await count_workflows(
            client, f"WorkflowType = 'TicketWorkflow' AND TicketKey STARTS_WITH '{prefix}-'"
        )
        == 200
    )
    jobs = launches(settings.state_dir)
    assert len(jobs) == 210 and len(set(jobs)) == 210  # one agent launch per job, none twice
    branches = git(
        "for-each-ref", "--format=%(refname:short)", "refs/heads/conductor/", cwd=sample_remote
    ).split()
    assert len([b for b in branches if b.startswith(f"conductor/{prefix}-")]) == 200
    assert len([b for b in branches if b.startswith("conductor/incident-")]) == 10
    assert queue_depth(settings, settings.sqs_queue_url) == 0


async def _at_least(client, query: str, n: int) -> bool:
    return await count_workflows(client, query) >= n
