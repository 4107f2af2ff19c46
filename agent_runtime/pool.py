"""`conductor-agent pool`: a long-lived node agent that pulls script tasks and reports structured results.

It registers, then polls only while fewer than `max_concurrency` of its scripts run. Each script runs
with the step runner (its own process group, killed at its timeout), sends a `running` beat every few
seconds, and its result is kept and re-sent with backoff until a conductor acknowledges it. A 403, 404
or 409 on a beat means the task is no longer ours (requeued after a lost lease, or over): the script is
stopped. SIGTERM/SIGINT: stop polling, finish the running scripts, report them, exit 0; a second
signal exits at once.
"""

import asyncio
import logging
import os
import signal
import tempfile
from collections import deque
from pathlib import Path

from agent_runtime.connection import TlsFiles
from agent_runtime.pool_api import ConductorApi, ConductorUnavailable, RegistrationRefused, ReportRefused
from agent_runtime.step_process import run_step
from contracts.jobs import FailureClass
from contracts.pool import OUTPUT_LIMIT, AgentRegistration, ReportStatus, ScriptTask, TaskReport
from contracts.steps import StepResult, StepSpec, StepStatus

log = logging.getLogger(__name__)

EXIT_STOPPED = 0
EXIT_REFUSED = os.EX_NOPERM
EXIT_INTERRUPTED = 130
KILL_GRACE_SECONDS = 5.0
MAX_BACKOFF_SECONDS = 30.0
# The script runs under a watchdog in its own process group: if this agent dies (even by SIGKILL), the
# watchdog kills the group within a second, so a lost agent leaves no script behind. `exec` keeps the
# script's shell the group leader the step runner times out; the watchdog is not a job of that shell,
# so a `wait` in the script does not wait for it.
_WATCHED_SCRIPT = (
    '(while kill -0 "$CONDUCTOR_AGENT_PID" 2>/dev/null; do sleep 1; done; kill -KILL 0) '
    "</dev/null >/dev/null 2>&1 &\n"
    'exec /bin/sh -c "$CONDUCTOR_SCRIPT"'
)
_REPORT_STATUS = {
    StepStatus.SUCCEEDED: ReportStatus.COMPLETED,
    StepStatus.FAILED: ReportStatus.FAILED,
    StepStatus.TIMED_OUT: ReportStatus.TIMED_OUT,
}


class PoolAgent:
    def __init__(
        self, api: ConductorApi, registration: AgentRegistration, workdir: Path, poll_interval: float
    ):
        self._api = api
        self._agent_id = registration.agent_id
        self._slots = asyncio.Semaphore(registration.max_concurrency)
        self._workdir = workdir
        self._poll_interval = poll_interval
        self._tasks: set[asyncio.Task] = set()

    async def run(self, stop: asyncio.Event) -> int:
        backoff = self._poll_interval
        while not stop.is_set():
            if not await _first(self._slots.acquire(), stop):
                break
            try:
                task = await self._api.poll()
            except ConductorUnavailable:
                self._slots.release()
                await _sleep(backoff, stop)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                continue
            except RegistrationRefused as err:
                self._slots.release()
                log.error("%s", err)
                return EXIT_REFUSED
            backoff = self._poll_interval
            if task is None:
                self._slots.release()
                await _sleep(self._poll_interval, stop)
                continue
            runner = asyncio.create_task(self._run_task(task), name=f"task-{task.task_id}")
            self._tasks.add(runner)
            runner.add_done_callback(self._tasks.discard)
        if self._tasks:
            log.info("stopping: waiting for %d running task(s) to finish and report", len(self._tasks))
            await asyncio.gather(*self._tasks, return_exceptions=True)
        return EXIT_STOPPED

    async def _run_task(self, task: ScriptTask) -> None:
        try:
            await self._run_and_report(task)
        except Exception:  # unreported, so the conductor requeues it once the lease runs out
            log.exception("task %s: the agent failed running it", task.task_id)

    async def _run_and_report(self, task: ScriptTask) -> None:
        """Run the script with beats, release its slot, then deliver its result until acknowledged."""
        log.info("task %s started (%s, timeout %g s)", task.task_id, task.capability, task.timeout_seconds)
        not_ours = asyncio.Event()
        beats = asyncio.create_task(self._beat(task.task_id, not_ours))
        try:
            with tempfile.TemporaryDirectory(prefix=f"task-{task.task_id}-", dir=self._workdir) as tmp:
                report = await self._run_script(task, Path(tmp), not_ours)
        finally:
            beats.cancel()
            self._slots.release()
        if not_ours.is_set():
            log.warning("task %s stopped: it is no longer ours, its result is not reported", task.task_id)
            return
        log.info("task %s %s (exit code %s)", task.task_id, report.status, report.exit_code)
        await self._deliver(task.task_id, report)

    async def _run_script(self, task: ScriptTask, workdir: Path, not_ours: asyncio.Event) -> TaskReport:
        outputs = {"stdout": _Output(), "stderr": _Output()}
        step = StepSpec(
            name="script",
            run=_WATCHED_SCRIPT,
            timeout_seconds=task.timeout_seconds,
            env={
                "CONDUCTOR_SCRIPT": task.script,
                "CONDUCTOR_AGENT_PID": str(os.getpid()),
                "CONDUCTOR_AGENT_ID": self._agent_id,
                "CONDUCTOR_TASK_ID": task.task_id,
            },
        )
        result = await run_step(
            step,
            workdir,
            kill_grace_seconds=KILL_GRACE_SECONDS,
            cancelled=not_ours,
            on_line=lambda _step, stream, line: outputs[stream].add(line),
        )
        return _report(
            result, outputs["stdout"].text(result.stdout_tail), outputs["stderr"].text(result.stderr_tail)
        )

    async def _beat(self, task_id: str, not_ours: asyncio.Event) -> None:
        while True:
            await asyncio.sleep(self._api.beat_seconds)
            try:
                await self._api.report(task_id, TaskReport(status=ReportStatus.RUNNING))
            except (ConductorUnavailable, RegistrationRefused):
                continue  # the next beat goes to the next conductor; the lease allows a few misses
            except ReportRefused as err:
                log.warning("beat for task %s refused (%s): stopping it", task_id, err)
                not_ours.set()
                return

    async def _deliver(self, task_id: str, report: TaskReport) -> None:
        delay = 1.0
        while True:
            try:
                await self._api.report(task_id, report)
                log.info("task %s: result acknowledged", task_id)
                return
            except ReportRefused as err:
                log.warning("task %s: result refused (%s); dropping it", task_id, err)
                return
            except (ConductorUnavailable, RegistrationRefused):
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF_SECONDS)


class _Output:
    """The newest OUTPUT_LIMIT characters of one stream, from the step runner's lines."""

    _BUDGET = OUTPUT_LIMIT - 100  # room for the "dropped" note

    def __init__(self) -> None:
        self._lines: deque[str] = deque()
        self._size = 0
        self._dropped = 0

    def add(self, line: str) -> None:
        self._lines.append(line)
        self._size += len(line) + 1
        while self._size > self._BUDGET and len(self._lines) > 1:
            dropped = len(self._lines.popleft()) + 1
            self._size -= dropped
            self._dropped += dropped

    def text(self, exact_tail: str) -> str:
        text = "".join(line + "\n" for line in self._lines)
        # Lines lose their newline; the runner's exact tail says whether the stream ended with one.
        if text.endswith("\n") and not exact_tail.endswith("\n"):
            text = text[:-1]
        if self._dropped:
            text = f"[{self._dropped} earlier characters dropped]\n{text}"
        return text[-OUTPUT_LIMIT:]


def _report(result: StepResult, stdout: str, stderr: str) -> TaskReport:
    infrastructure = result.failure_class == FailureClass.INFRASTRUCTURE
    return TaskReport(
        status=_REPORT_STATUS.get(result.status, ReportStatus.FAILED),
        stdout=stdout,
        # A script that could not start has no output; the runner's reason is in its stderr tail.
        stderr=result.stderr_tail if infrastructure else stderr,
        exit_code=result.exit_code,
        duration_seconds=result.duration_seconds,
        failure_class=FailureClass.INFRASTRUCTURE if infrastructure else None,
    )


async def _first(awaitable, stop: asyncio.Event) -> bool:
    """Await `awaitable` unless `stop` is set first; True if it finished."""
    work = asyncio.ensure_future(awaitable)
    stopped = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({work, stopped}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if work in done:
        return True
    work.cancel()
    return False


async def _sleep(seconds: float, stop: asyncio.Event) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        pass


async def _serve(
    urls: list[str],
    registration: AgentRegistration,
    join_token: str,
    workdir: Path,
    poll_interval: float,
    tls: TlsFiles | None,
) -> int:
    api = ConductorApi(urls, registration, join_token, tls)
    stop = asyncio.Event()
    main = asyncio.current_task()

    def on_signal(sig: signal.Signals) -> None:
        if stop.is_set():
            log.warning("%s again: exiting without waiting for running tasks", sig.name)
            main.cancel()
            return
        log.info("%s: no new tasks; finishing the running ones", sig.name)
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    log.info(
        "pool agent %s (%s, up to %d at once) polling %s",
        registration.agent_id,
        ",".join(registration.capabilities),
        registration.max_concurrency,
        ", ".join(urls),
    )
    try:
        return await PoolAgent(api, registration, workdir, poll_interval).run(stop)
    finally:
        await api.aclose()


def run_pool(
    urls: list[str],
    registration: AgentRegistration,
    join_token: str,
    workdir: Path | None,
    poll_interval: float,
    tls: TlsFiles | None = None,
) -> int:
    """The `conductor-agent pool` process: 0 after a requested stop, 77 (EX_NOPERM) when registration
    is refused, 130 after a second signal."""
    # httpx logs every request at INFO: one line per poll would drown the task lines.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        if workdir is not None:
            workdir.mkdir(parents=True, exist_ok=True)
            return asyncio.run(_serve(urls, registration, join_token, workdir, poll_interval, tls))
        with tempfile.TemporaryDirectory(prefix="conductor-pool-agent-") as tmp:
            return asyncio.run(_serve(urls, registration, join_token, Path(tmp), poll_interval, tls))
    except asyncio.CancelledError:  # a second signal: running scripts were killed, results not sent
        return EXIT_INTERRUPTED
