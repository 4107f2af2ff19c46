"""Small shared test tools (git tools live in tests/git_helpers.py)."""

import asyncio
import json
import os
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import boto3
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError

from conductor_worker.config import Settings
from contracts.ids import ticket_workflow_id
from contracts.jobs import JobResult

T = TypeVar("T")


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def is_running(pid: int) -> bool:
    """True unless the pid is gone or a zombie (PID 1 in a container may never reap orphans)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return False
    return fields[0] != "Z"


async def wait_for(
    probe: Callable[[], Awaitable[T | None]], timeout: float = 60.0, interval: float = 0.2
) -> T:
    """Poll `probe` until it returns something truthy; fail with the timeout otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


# Tickets and the intake queue -------------------------------------------------------------------

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def ticket_body(key: str, **fields: Any) -> str:
    """The fixture ticket under a fresh key: the dev server outlives each test, ids must not collide."""
    issue = json.loads((EXAMPLES / "tickets" / "ENG-123.json").read_text())
    issue["key"] = key
    issue["fields"].update(fields)
    return json.dumps(issue)


def fresh_key(project: str = "ENG") -> str:
    return f"{project}-{random.randrange(10**6, 10**7)}"


def make_intake_queues(sqs, max_receive_count: int = 3, visibility_seconds: int = 30) -> dict[str, str]:
    """An intake queue with a DLQ behind a redrive policy, as infra/ creates it (fresh names each call)."""
    suffix = uuid.uuid4().hex[:8]
    dlq_url = sqs.create_queue(QueueName=f"intake-dlq-{suffix}")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)}
    queue_url = sqs.create_queue(
        QueueName=f"intake-{suffix}",
        Attributes={"RedrivePolicy": json.dumps(redrive), "VisibilityTimeout": str(visibility_seconds)},
    )["QueueUrl"]
    return {"queue": queue_url, "dlq": dlq_url}


def sqs_client(settings: Settings):
    return boto3.client("sqs", endpoint_url=settings.aws_endpoint_url, region_name="us-east-1")


def queue_depth(settings: Settings, queue_url: str) -> int:
    attrs = sqs_client(settings).get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


async def ticket_handle(client: Client, key: str, timeout: float = 60) -> WorkflowHandle:
    """The ticket's workflow handle, once the intake has started it."""
    handle = client.get_workflow_handle(ticket_workflow_id("jira", key), result_type=JobResult)

    async def started() -> bool:
        try:
            await handle.describe()
            return True
        except RPCError:
            return False

    await wait_for(started, timeout=timeout)
    return handle


async def ticket_result(client: Client, key: str, timeout: float = 120) -> JobResult:
    handle = await ticket_handle(client, key)
    return await asyncio.wait_for(handle.result(), timeout=timeout)


async def count_workflows(client: Client, query: str) -> int:
    return (await client.count_workflows(query)).count


def install_fake_codex(bin_dir: Path, script: str, monkeypatch) -> None:
    """A stand-in `codex` first on PATH; the launcher passes PATH on to the agents it starts."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    (bin_dir / "codex").write_text(script)
    (bin_dir / "codex").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
