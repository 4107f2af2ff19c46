"""Small shared test tools (git tools live in tests/git_helpers.py)."""

import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import boto3
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError

from conductor_worker.config import Settings
from contracts.ids import account_workflow_id, ticket_workflow_id
from contracts.jobs import JobResult
from workflows.incident_chain import IncidentChainWorkflow

T = TypeVar("T")


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def moto_server_process(startup_timeout: float = 30.0) -> Iterator[str]:
    """moto's server in a process of its own (with tests/moto_sqs.py's retention check); yields its endpoint.

    In a busy process (a conductor's worker, a bench) an in-process ThreadedMotoServer competes for the
    GIL: with the worker busy, a bench's 1,000 SendMessageBatch calls ran for over 16 minutes.
    """
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.moto_sqs", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"moto's server exited with {server.returncode} at start")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"moto's server did not listen within {startup_timeout} s") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(server, timeout=10)


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


async def incident_job_result(client: Client, account: str) -> tuple[str, JobResult]:
    """The account's first incident job, found through the chain's status query (not through visibility)."""
    chain = client.get_workflow_handle(account_workflow_id(account))

    async def job_id() -> str:
        try:
            status = await chain.query(IncidentChainWorkflow.status)
        except Exception:  # not started yet: the intake has not polled the alarm
            return ""
        return status.chains.chains[0].last_job_id if status.chains.chains else ""

    job = await wait_for(job_id, timeout=60)
    result = await asyncio.wait_for(client.get_workflow_handle(job, result_type=JobResult).result(), 120)
    return job, result


async def count_workflows(client: Client, query: str) -> int:
    return (await client.count_workflows(query)).count


# The real coding-agent CLIs, installed by `make agent-clis` (the Makefile's test target depends on it).
AGENT_CLIS_BIN = Path(__file__).resolve().parent.parent / ".tools" / "npm" / "node_modules" / ".bin"


def use_real_agent_clis(monkeypatch) -> None:
    """The pinned `codex` and `claude` first on PATH; the launcher passes PATH on to the agents it starts."""
    missing = [name for name in ("codex", "claude") if not (AGENT_CLIS_BIN / name).exists()]
    assert not missing, f"{', '.join(missing)} not in {AGENT_CLIS_BIN}: run `make agent-clis`"
    monkeypatch.setenv("PATH", f"{AGENT_CLIS_BIN}{os.pathsep}{os.environ['PATH']}")


# What a stand-in `codex` answers to the version check (agent_runtime/coding_agents/cli_process.py).
_FAKE_CODEX_VERSION = 'if [ "$1" = "--version" ]; then echo "codex-cli 0.169.0"; exit 0; fi\n'


def install_fake_codex(bin_dir: Path, script: str, monkeypatch) -> None:
    """A stand-in `codex` first on PATH, for tests about the conductor, not the CLI (those use the real one)."""
    write_fake_codex(bin_dir, script)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def write_fake_codex(bin_dir: Path, script: str) -> Path:
    """`bin_dir/codex` running `script`. It passes the version check, and prints codex's `turn.completed`
    event when the script exits 0, so that its run reads as a finished turn."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    shebang, _, body = script.partition("\n")
    finished = 'status=$?; [ $status -eq 0 ] && echo \'{"type":"turn.completed","usage":{}}\'; exit $status\n'
    wrapped = f"{shebang}\n{_FAKE_CODEX_VERSION}(\n{body.rstrip()}\n)\n{finished}"
    (bin_dir / "codex").write_text(wrapped)
    (bin_dir / "codex").chmod(0o755)
    return bin_dir


def stop_process(proc: subprocess.Popen, timeout: float) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def stage_attempt(settings: Settings, job_id: str, attempt: int = 1, files=(), **budgets) -> None:
    """Stage a job attempt in the settings' blob store, as the stage_task_files activity does, so a
    token for it opens the gateway (security/job_access.py)."""
    from stores.attempts import StagedAttempts

    StagedAttempts(settings.open_blob_store()).stage(job_id, attempt, list(files), **budgets)


def use_s3_stores(settings: Settings, aws_endpoint: str, monkeypatch) -> Settings:
    """The blob and log stores on S3 (moto at `aws_endpoint`, a fresh bucket) for this test's conductor
    processes, which take the environment on; returns `settings` with the endpoint, for conductor_process."""
    bucket = f"conductor-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=aws_endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    for name, value in {
        "CONDUCTOR_BLOB_STORE": "s3",
        "CONDUCTOR_BLOB_S3_BUCKET": bucket,
        "CONDUCTOR_LOG_STORE": "s3",
        "CONDUCTOR_LOGS_S3_BUCKET": bucket,
    }.items():
        monkeypatch.setenv(name, value)
    return settings.model_copy(update={"aws_endpoint_url": aws_endpoint})
