"""Shared by the scale, drain and visibility tests: alarm bodies, bulk sends, a conductor subprocess."""

import json
import os
import random
import signal
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.git_helpers import git
from tests.helpers import EXAMPLES, sqs_client

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
        f"tickets:\n  - route: {{repo_url: {sample_remote}, name: greeter, max_concurrent_jobs: 50}}\n"
        f'accounts:\n  - account: "*"\n    route: {{repo_url: {sample_remote}, name: greeter, max_concurrent_jobs: 50}}\n'
    )
    # Default 5 s heartbeats: on 2 busy cores a 1 s beat could be missed and fail a healthy job.
    return intake_settings.model_copy(
        update={"routes_file": routes, "heartbeat_interval_seconds": 5, "max_concurrent_activities": 24}
    )


def new_accounts(n: int) -> list[str]:
    return [str(random.randrange(10**11, 10**12)) for _ in range(n)]


def conductor_process(
    settings, gateway_port: int, log: Path, extra_env: dict[str, str] | None = None
) -> subprocess.Popen:
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
        "CONDUCTOR_TICKET_POLICY__RETRY_WINDOW_SECONDS": "0",
        "CONDUCTOR_INCIDENT_POLICY__RETRY_WINDOW_SECONDS": "0",
        # `serve` wants the secret from the environment; processes of one test on one state dir may share
        # the generated one (the test mints tokens from it too).
        **(
            {"CONDUCTOR_TOKEN_SECRET": settings.token_secret.get_secret_value()}
            if settings.token_secret.get_secret_value()
            else {"CONDUCTOR_GENERATE_TOKEN_SECRET": "true"}
        ),
        **(extra_env or {}),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "conductor_worker", "serve"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop_conductors(*procs: subprocess.Popen | None) -> None:
    """SIGTERM each conductor process still running (a drain) and wait for it; None and ended ones are skipped."""
    for proc in dict.fromkeys(p for p in procs if p is not None):
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)


def assert_one_branch_and_pr_each(pulls: list[dict], remote: Path, prefix: str, keys: list[str]) -> int:
    """Each ticket's branch is in `remote` and has exactly one pull request; returns how many PRs."""
    heads = Counter(pr["head"]["ref"] for pr in pulls if pr["head"]["ref"].startswith(f"conductor/{prefix}-"))
    assert sorted(heads) == sorted(f"conductor/{key}" for key in keys)
    assert set(heads.values()) == {1}, f"duplicate pull requests: {[h for h, n in heads.items() if n > 1]}"
    branches = git("for-each-ref", "--format=%(refname:short)", "refs/heads/conductor/", cwd=remote).split()
    assert len([b for b in branches if b.startswith(f"conductor/{prefix}-")]) == len(keys)
    return len(heads)
