"""One per-job agent run: handshake, fetch the task files, run the task DAG, report; logs all along.

After the handshake every failure becomes a FAILED result with a failure class, so the conductor
always learns why; only a gateway we cannot reach at first (or that refuses us) ends the process
without one. Every line (the steps' output and our own progress lines) goes to the sequenced log
(agent_runtime/log_buffer.py).

When the gateway goes away mid-run, the steps run on. The result is written to the job directory
before it is reported; the agent keeps trying to report it and to flush its log, with backoff, for
`report_timeout` seconds, then exits with EXIT_RESULT_KEPT and one line naming where the result is.
"""

import asyncio
import logging
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

from pydantic import ValidationError

from agent_runtime.builtin_steps import JOB_FILE
from agent_runtime.connection import (
    GatewayConnection,
    GatewayError,
    GatewayRefused,
    Heartbeater,
    TaskFileIntegrityError,
    TlsFiles,
)
from agent_runtime.dag import DagError, DagRunner
from agent_runtime.job_task import REPO_DIR, task_agent_result, task_spec
from agent_runtime.log_buffer import (
    AGENT_STREAM,
    DEFAULT_MEMORY_BYTES,
    DEFAULT_SPILL_BYTES,
    LogBuffer,
)
from agent_runtime.log_sender import LogSender
from agent_runtime.task_files import write_task_files
from contracts.ids import safe_name
from contracts.jobs import AgentResult, AgentStatus, FailureClass, TaskInstructions
from contracts.steps import StepResult, StepStatus, TaskResult, TaskSpec
from contracts.task_paths import TaskFilePathError
from proto.conductor.v1 import agent_pb2

log = logging.getLogger(__name__)

EXIT_REPORTED = 0
# sysexits.h: a launcher can tell "retry elsewhere" (unavailable) from "do not retry" (refused).
EXIT_GATEWAY_UNAVAILABLE = os.EX_UNAVAILABLE
EXIT_GATEWAY_REFUSED = os.EX_NOPERM
# The job ran to its end but the gateway did not take the result in time: it waits on disk.
EXIT_RESULT_KEPT = os.EX_TEMPFAIL
DEFAULT_REPORT_TIMEOUT = 600.0
RESULT_FILE = "result.json"
STEERING_FILE = "steering.md"
UNSENT_LOG_FILE = "unsent-log.jsonl"
# Once the result is in, the log still gets this long to drain even if the report took all the time.
_MIN_LOG_FLUSH_SECONDS = 5.0
_MAX_REPORT_BACKOFF = 10.0
_EXPECTED_ERRORS = (
    DagError,
    GatewayError,
    TaskFileIntegrityError,
    TaskFilePathError,
    ValidationError,
    OSError,
)


class JobFailed(Exception):
    """The task can't even start; carries what goes into the FAILED result."""

    def __init__(self, failure_class: FailureClass, summary: str) -> None:
        super().__init__(summary)
        self.failure_class = failure_class
        self.summary = summary


class _LogHandler(logging.Handler):
    """Our own progress lines (INFO and up) into the sequenced log, beside the steps' output."""

    def __init__(self, logs: LogBuffer) -> None:
        super().__init__(logging.INFO)
        self._logs = logs

    def emit(self, record: logging.LogRecord) -> None:
        text = self.format(record)
        if record.levelno > logging.INFO:
            text = f"{record.levelname}: {text}"
        self._logs.append("", AGENT_STREAM, text)


def run_job(
    gateway: str,
    token: str,
    workdir: Path,
    coding_agent: str,
    timeout: float,
    *,
    connect_timeout: float = 60.0,
    report_timeout: float = DEFAULT_REPORT_TIMEOUT,
    log_memory_bytes: int = DEFAULT_MEMORY_BYTES,
    log_spill_bytes: int = DEFAULT_SPILL_BYTES,
    tls: TlsFiles | None = None,
) -> int:
    """Run the job the token names; 0 once the result (success or failure) is reported."""
    started = time.monotonic()
    with GatewayConnection(gateway, token, connect_timeout=connect_timeout, tls=tls) as conn:
        try:
            hello = conn.handshake()
        except GatewayError as err:
            return _gateway_exit(err)
        job_dir = _fresh_job_dir(workdir, hello)
        logs = LogBuffer(job_dir / "log-spill.blocks", log_memory_bytes, log_spill_bytes)
        sender = LogSender(logs, conn.start_append_logs)
        sender.start()
        handler = _LogHandler(logs)
        logging.getLogger("agent_runtime").addHandler(handler)
        heartbeater = Heartbeater(
            conn,
            hello.heartbeat_interval_seconds,
            on_steering=lambda entries: _take_steering(job_dir, entries),
        )
        heartbeater.start()
        try:
            log.info(
                "handshake: job %s attempt %d, %d task file(s)", hello.job_id, hello.attempt, len(hello.files)
            )
            result, bundle, ran = _work_or_failure(
                conn, hello, job_dir, coding_agent, timeout, heartbeater, logs
            )
            result.duration_seconds = time.monotonic() - started
            (job_dir / RESULT_FILE).write_text(result.model_dump_json(indent=2), encoding="utf-8")
            heartbeater.phase = "reporting"
            deadline = time.monotonic() + report_timeout
            code, problem = _report(conn, result, bundle, heartbeater.steps, ran, deadline)
        finally:
            heartbeater.stop()
            logging.getLogger("agent_runtime").removeHandler(handler)
        logs.close(f"conductor-agent: exiting with code {code}")
        flushed = sender.finish(max(deadline - time.monotonic(), _MIN_LOG_FLUSH_SECONDS))
        unsent = "" if flushed else _keep_unsent(logs, job_dir)
    if code == EXIT_RESULT_KEPT:
        kept = f"; the result is kept in {job_dir / RESULT_FILE}"
        if bundle is not None:
            kept += f" (bundle {bundle})"
        print(f"conductor-agent: {problem}{kept}{unsent}", file=sys.stderr)
    elif code != EXIT_REPORTED:
        print(f"conductor-agent: {problem}", file=sys.stderr)
    elif unsent:
        print(f"conductor-agent: result reported{unsent}", file=sys.stderr)
    return code


def _report(
    conn: GatewayConnection,
    result: AgentResult,
    bundle: Path | None,
    steps: dict[str, str],
    ran: list[StepResult],
    deadline: float,
) -> tuple[int, str]:
    """Upload the result, retrying with backoff until `deadline`; (exit code, what went wrong)."""
    log.info(
        "reporting: %s (%s)%s",
        result.status.value,
        result.failure_class.value,
        f", bundle {bundle.stat().st_size} bytes" if bundle else "",
    )
    backoff, failing = 0.5, False
    while True:
        try:
            response = conn.upload_result(
                result, bundle, steps, ran=ran, max_timeout=max(deadline - time.monotonic(), 1.0)
            )
        except GatewayRefused as err:
            return EXIT_GATEWAY_REFUSED, str(err)
        except GatewayError as err:
            if time.monotonic() + backoff >= deadline:
                return EXIT_RESULT_KEPT, f"could not report the result to {conn.address} in time: {err}"
            if not failing:
                log.warning("result upload failed, retrying until it is taken: %s", err)
            failing = True
            time.sleep(backoff)
            backoff = min(backoff * 2, _MAX_REPORT_BACKOFF)
            continue
        log.info("reported: accepted=%s duplicate=%s", response.accepted, response.duplicate)
        return EXIT_REPORTED, ""


def _keep_unsent(logs: LogBuffer, job_dir: Path) -> str:
    path = job_dir / UNSENT_LOG_FILE
    count = logs.save_unacked(path)
    return f"; {count} log line(s) not delivered, kept in {path}"


def _work_or_failure(
    conn: GatewayConnection,
    hello: agent_pb2.HandshakeResponse,
    job_dir: Path,
    coding_agent: str,
    timeout: float,
    heartbeater: Heartbeater,
    logs: LogBuffer,
) -> tuple[AgentResult, Path | None, list[StepResult]]:
    """The result, its bundle, and the steps that ran (with their times, for the job's trace)."""
    try:
        return _work(conn, hello, job_dir, coding_agent, timeout, heartbeater, logs)
    except JobFailed as failed:
        log.error("failed while %s: %s", heartbeater.phase, failed.summary)
        return (
            AgentResult(
                status=AgentStatus.FAILED, failure_class=failed.failure_class, summary=failed.summary
            ),
            None,
            [],
        )
    except Exception as err:  # the report must go out whatever broke
        # Failures we expect (network, disk, bad task files) need no traceback.
        expected = isinstance(err, _EXPECTED_ERRORS)
        log.error("failed while %s: %s", heartbeater.phase, err, exc_info=not expected)
        summary = f"failed while {heartbeater.phase}: {err}"
        return (
            AgentResult(status=AgentStatus.FAILED, failure_class=_failure_class(err), summary=summary),
            None,
            [],
        )


def _work(
    conn: GatewayConnection,
    hello: agent_pb2.HandshakeResponse,
    job_dir: Path,
    coding_agent: str,
    timeout: float,
    heartbeater: Heartbeater,
    logs: LogBuffer,
) -> tuple[AgentResult, Path | None, list[StepResult]]:
    heartbeater.phase = "downloading"
    log.info("downloading: %d task file(s)", len(hello.files))
    files = write_task_files(conn, hello.files, job_dir / "task")
    instructions = _read_instructions(files)
    spec = task_spec(job_dir, instructions, files, coding_agent, timeout, traceparent=hello.traceparent)
    heartbeater.steps = {step.name: StepStatus.PENDING.value for step in spec.steps}
    heartbeater.phase = "running"
    log.info("running: %s on %s", ", ".join(heartbeater.steps), instructions.branch)
    task = asyncio.run(_run_dag(spec, job_dir / REPO_DIR, heartbeater, logs))
    log.info("task %s", task.status.value)
    return *task_agent_result(task, job_dir, instructions), task.steps


async def _run_dag(spec: TaskSpec, workdir: Path, heartbeater: Heartbeater, logs: LogBuffer) -> TaskResult:
    def on_state(name: str, status: StepStatus) -> None:
        heartbeater.steps = {**heartbeater.steps, name: status.value}
        log.info("step %s: %s", name, status.value)

    workdir.mkdir()  # empty: `clone` clones into it; every later step runs in the clone
    runner = DagRunner(spec, workdir, on_line=logs.append, on_state=on_state)
    watch = asyncio.create_task(_cancel_when_asked(runner, heartbeater))
    # A launcher stops us with SIGTERM to our process group; the steps run in sessions of their own,
    # so they must hear it from us (SIGTERM, SIGKILL after the grace period) before we go.
    on_main_thread = threading.current_thread() is threading.main_thread()
    if on_main_thread:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, runner.cancel)
    try:
        return await runner.run()
    finally:
        watch.cancel()
        if on_main_thread:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGTERM)


async def _cancel_when_asked(runner: DagRunner, heartbeater: Heartbeater) -> None:
    # The heartbeat thread learns of a cancel; the DAG must hear it on its own event loop.
    while not heartbeater.cancel_requested:
        await asyncio.sleep(0.5)
    runner.cancel()


def _read_instructions(files: dict[str, Path]) -> TaskInstructions:
    if JOB_FILE not in files:
        raise JobFailed(FailureClass.INFRASTRUCTURE, f"the handshake listed no {JOB_FILE}")
    instructions = TaskInstructions.model_validate_json(files[JOB_FILE].read_bytes())
    if instructions.prompt_file not in files:
        raise JobFailed(
            FailureClass.INFRASTRUCTURE,
            f"{JOB_FILE} names prompt file {instructions.prompt_file!r}, which was not sent",
        )
    return instructions


def _failure_class(err: Exception) -> FailureClass:
    # Network: the gateway failed us mid-job. Everything else broke on this machine (disk full, a
    # malformed task file or steps.json): infrastructure.
    if isinstance(err, GatewayError | TaskFileIntegrityError):
        return FailureClass.NETWORK
    return FailureClass.INFRASTRUCTURE


def _take_steering(job_dir: Path, entries: list[agent_pb2.Steering]) -> None:
    """Operator instructions that arrive mid-run: logged (so `conductor logs` shows them) and kept in
    STEERING_FILE in the job directory for the coding agent; a relaunched attempt gets them in its prompt."""
    with (job_dir / STEERING_FILE).open("a", encoding="utf-8") as f:
        for entry in entries:
            log.info("steering #%d from %s: %s", entry.seq, entry.by, entry.text)
            f.write(f"## Instruction {entry.seq} (from {entry.by})\n\n{entry.text}\n\n")


def _fresh_job_dir(workdir: Path, hello: agent_pb2.HandshakeResponse) -> Path:
    job_dir = workdir / f"{safe_name(hello.job_id)}-{hello.attempt}"
    # Leftovers of an earlier run of this same attempt: start from what a new container would see.
    shutil.rmtree(job_dir, ignore_errors=True)
    job_dir.mkdir(parents=True)
    return job_dir


def _gateway_exit(err: GatewayError) -> int:
    print(f"conductor-agent: {err}", file=sys.stderr)
    return EXIT_GATEWAY_REFUSED if isinstance(err, GatewayRefused) else EXIT_GATEWAY_UNAVAILABLE
