"""One per-job agent run: handshake, fetch, clone, code, commit, bundle, report.

After the handshake every failure becomes a FAILED result with a failure class, so the conductor
always learns why; only a gateway we cannot reach (or that refuses us) ends the process without one.
"""

import logging
import os
import shutil
import sys
import time
from pathlib import Path

from pydantic import ValidationError

from agent_runtime.coding_agents import TAIL_CHARS, CodingAgentOutcome, run_codex, run_demo_agent
from agent_runtime.connection import (
    GatewayConnection,
    GatewayError,
    GatewayRefused,
    Heartbeater,
    TaskFileIntegrityError,
)
from agent_runtime.task_files import write_task_files
from agent_runtime.workspace import GitError, RemoteUnreachable, clone
from contracts.ids import safe_name
from contracts.jobs import AgentResult, AgentStatus, FailureClass, TaskInstructions
from contracts.task_paths import TaskFilePathError
from proto.conductor.v1 import agent_pb2

log = logging.getLogger(__name__)

EXIT_REPORTED = 0
# sysexits.h: a launcher can tell "retry elsewhere" (unavailable) from "do not retry" (refused).
EXIT_GATEWAY_UNAVAILABLE = os.EX_UNAVAILABLE
EXIT_GATEWAY_REFUSED = os.EX_NOPERM
JOB_FILE = "job.json"
_EXPECTED_ERRORS = (
    GitError,
    GatewayError,
    TaskFileIntegrityError,
    TaskFilePathError,
    ValidationError,
    OSError,
)


class JobFailed(Exception):
    """A step failed in a way we can classify; carries what goes into the FAILED result."""

    def __init__(
        self,
        failure_class: FailureClass,
        summary: str,
        outcome: CodingAgentOutcome | None = None,
        stderr_tail: str = "",
    ) -> None:
        super().__init__(summary)
        self.failure_class = failure_class
        self.summary = summary
        self.outcome = outcome
        self.stderr_tail = stderr_tail

    def result(self) -> AgentResult:
        outcome = self.outcome
        return AgentResult(
            status=AgentStatus.FAILED,
            failure_class=self.failure_class,
            summary=self.summary,
            exit_code=outcome.exit_code if outcome else 0,
            stdout_tail=outcome.stdout_tail if outcome else "",
            stderr_tail=outcome.stderr_tail if outcome else self.stderr_tail,
        )


def run_job(
    gateway: str,
    token: str,
    workdir: Path,
    coding_agent: str,
    timeout: float,
    *,
    connect_timeout: float = 60.0,
) -> int:
    """Run the job the token names; 0 once the result (success or failure) is reported."""
    started = time.monotonic()
    with GatewayConnection(gateway, token, connect_timeout=connect_timeout) as conn:
        try:
            hello = conn.handshake()
        except GatewayError as err:
            return _gateway_exit(err)
        log.info(
            "handshake: job %s attempt %d, %d task file(s)",
            hello.job_id,
            hello.attempt,
            len(hello.files),
        )
        heartbeater = Heartbeater(conn, hello.heartbeat_interval_seconds)
        heartbeater.start()
        try:
            result, bundle = _work_or_failure(conn, hello, workdir, coding_agent, timeout, heartbeater)
            result.duration_seconds = time.monotonic() - started
            heartbeater.phase = "uploading"
            log.info(
                "uploading: %s (%s)%s",
                result.status.value,
                result.failure_class.value,
                f", bundle {bundle.stat().st_size} bytes" if bundle else "",
            )
            response = conn.upload_result(result, bundle)
        except GatewayError as err:
            return _gateway_exit(err)
        finally:
            heartbeater.stop()
    log.info("reported: accepted=%s duplicate=%s", response.accepted, response.duplicate)
    return EXIT_REPORTED


def _work_or_failure(
    conn: GatewayConnection,
    hello: agent_pb2.HandshakeResponse,
    workdir: Path,
    coding_agent: str,
    timeout: float,
    heartbeater: Heartbeater,
) -> tuple[AgentResult, Path | None]:
    try:
        return _work(conn, hello, workdir, coding_agent, timeout, heartbeater)
    except JobFailed as failed:
        log.error("failed while %s: %s", heartbeater.phase, failed.summary)
        return failed.result(), None
    except Exception as err:  # the report must go out whatever broke
        # Failures we expect (git, network, disk, bad task files) need no traceback.
        expected = isinstance(err, _EXPECTED_ERRORS)
        log.error("failed while %s: %s", heartbeater.phase, err, exc_info=not expected)
        failed = JobFailed(
            _failure_class(err),
            f"failed while {heartbeater.phase}: {err}",
            stderr_tail=err.stderr[-TAIL_CHARS:] if isinstance(err, GitError) else "",
        )
        return failed.result(), None


def _work(
    conn: GatewayConnection,
    hello: agent_pb2.HandshakeResponse,
    workdir: Path,
    coding_agent: str,
    timeout: float,
    heartbeater: Heartbeater,
) -> tuple[AgentResult, Path]:
    job_dir = _fresh_job_dir(workdir, hello)
    heartbeater.phase = "downloading"
    log.info("downloading: %d task file(s)", len(hello.files))
    files = write_task_files(conn, hello.files, job_dir / "task")
    instructions, prompt = _read_instructions(files)

    heartbeater.phase = "cloning"
    log.info("cloning: %s (%s)", instructions.repo_url, instructions.base_branch)
    workspace = clone(instructions.repo_url, instructions.base_branch, job_dir / "repo")
    workspace.create_branch(instructions.branch)

    heartbeater.phase = "running"
    log.info("running: %s coding agent on %s", coding_agent, instructions.branch)
    if coding_agent == "codex":
        outcome = run_codex(workspace.path, prompt, timeout)
    else:
        outcome = run_demo_agent(workspace.path, instructions, prompt)
    if outcome.failure_class is not FailureClass.NONE:
        raise JobFailed(outcome.failure_class, outcome.summary, outcome)

    heartbeater.phase = "committing"
    log.info("committing: %s", instructions.commit_message.partition("\n")[0])
    workspace.commit_all(instructions.commit_message)
    if workspace.commits_ahead(instructions.base_branch) == 0:
        raise JobFailed(FailureClass.SCRIPT, "the coding agent made no change", outcome)

    heartbeater.phase = "bundling"
    bundle = workspace.create_bundle(job_dir / "work.bundle", instructions.base_branch, instructions.branch)
    commit_sha = workspace.head()
    log.info("bundled: %s at %s", instructions.branch, commit_sha)
    return AgentResult(
        status=AgentStatus.SUCCEEDED,
        exit_code=outcome.exit_code,
        stdout_tail=outcome.stdout_tail,
        stderr_tail=outcome.stderr_tail,
        summary=outcome.summary,
        branch=instructions.branch,
        commit_sha=commit_sha,
    ), bundle


def _read_instructions(files: dict[str, Path]) -> tuple[TaskInstructions, str]:
    if JOB_FILE not in files:
        raise JobFailed(FailureClass.INFRASTRUCTURE, f"the handshake listed no {JOB_FILE}")
    instructions = TaskInstructions.model_validate_json(files[JOB_FILE].read_bytes())
    if instructions.prompt_file not in files:
        raise JobFailed(
            FailureClass.INFRASTRUCTURE,
            f"{JOB_FILE} names prompt file {instructions.prompt_file!r}, which was not sent",
        )
    return instructions, files[instructions.prompt_file].read_text(encoding="utf-8")


def _failure_class(err: Exception) -> FailureClass:
    # Network: the remote or the gateway failed us mid-job. Everything else broke on this machine
    # (git missing, disk full, a malformed task file): infrastructure.
    if isinstance(err, RemoteUnreachable | GatewayError | TaskFileIntegrityError):
        return FailureClass.NETWORK
    return FailureClass.INFRASTRUCTURE


def _fresh_job_dir(workdir: Path, hello: agent_pb2.HandshakeResponse) -> Path:
    job_dir = workdir / f"{safe_name(hello.job_id)}-{hello.attempt}"
    # Leftovers of an earlier run of this same attempt: start from what a new container would see.
    shutil.rmtree(job_dir, ignore_errors=True)
    job_dir.mkdir(parents=True)
    return job_dir


def _gateway_exit(err: GatewayError) -> int:
    print(f"conductor-agent: {err}", file=sys.stderr)
    return EXIT_GATEWAY_REFUSED if isinstance(err, GatewayRefused) else EXIT_GATEWAY_UNAVAILABLE
