"""Run a coding-agent CLI through its adapter: version check, config, the prompt on stdin, the event
stream read as it comes, a timeout that kills the whole process group, and the verdict.

Success needs both the CLI's own success (its final event) and a changed clone: both CLIs exit 0 after a
refused edit, so the diff is checked here, never assumed.
"""

import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

from agent_runtime.coding_agents.base import (
    INHERITED_ENV,
    KILL_GRACE_SECONDS,
    TAIL_CHARS,
    CliAdapter,
    CliRun,
    CliWorkspace,
    CodingAgentOutcome,
)
from contracts.jobs import FailureClass

VERSION_TIMEOUT_SECONDS = 60.0
PROMPT_FILE = "TASK.md"


def run_cli(adapter: CliAdapter, workspace: CliWorkspace, prompt: str, timeout: float) -> CodingAgentOutcome:
    executable = shutil.which(adapter.executable)
    if executable is None:
        return _infrastructure(f"{adapter.name} CLI ({adapter.executable}) not found on PATH", 127)
    workspace.home.mkdir(parents=True, exist_ok=True)
    env = {name: os.environ[name] for name in INHERITED_ENV if name in os.environ}
    env.update(adapter.environment(workspace))
    problem = _version_problem(adapter, executable, env)
    if problem:
        return _infrastructure(problem, 126)
    adapter.write_config(workspace)
    stdin_text = _prompt_for(adapter, workspace, prompt)
    try:
        # Own session: a timeout or cancel reaches every process the CLI started.
        proc = subprocess.Popen(
            adapter.command(executable, workspace),
            cwd=workspace.repo,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            start_new_session=True,
        )
    except OSError as err:
        return _infrastructure(f"could not start {adapter.name}: {err}", 126)
    run = CliRun()
    feeder = threading.Thread(target=_feed, args=(proc.stdin, stdin_text), daemon=True)
    feeder.start()
    echoes = [
        _Echo(proc.stdout, sys.stdout, lambda line: _read_event(adapter, line, run)),
        _Echo(proc.stderr, sys.stderr),
    ]
    try:
        proc.wait(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        _stop_group(proc)
        timed_out = True
    for echo in echoes:
        # Something that left the group (setsid) may still hold a pipe: keep what was read by then.
        echo.join(KILL_GRACE_SECONDS)
    return _verdict(adapter, workspace, proc.returncode, timed_out, timeout, run, echoes)


def _verdict(
    adapter: CliAdapter,
    workspace: CliWorkspace,
    exit_code: int,
    timed_out: bool,
    timeout: float,
    run: CliRun,
    echoes: list["_Echo"],
) -> CodingAgentOutcome:
    stdout, stderr = echoes[0].tail, echoes[1].tail
    no_changes = False
    said = run.errors[-1] if run.errors else _last_line(stderr)
    if timed_out:
        summary = f"{adapter.name} timed out after {timeout:g}s"
    elif exit_code != 0:
        summary = f"{adapter.name} exited with code {exit_code}" + (f": {said}" if said else "")
    elif not run.succeeded:
        summary = f"{adapter.name} exited 0 without finishing its turn" + (f": {said}" if said else "")
    elif not _changed(workspace.repo):
        no_changes = True
        summary = f"{adapter.name} finished without changing anything" + (
            f": {run.final_message[:500]}" if run.final_message else ""
        )
    else:
        summary = run.final_message[:500] or f"{adapter.name} finished"
    if run.denials:
        summary += f" ({len(run.denials)} tool call(s) denied: {'; '.join(run.denials)[:300]})"
    failed = timed_out or exit_code != 0 or not run.succeeded or no_changes
    return CodingAgentOutcome(
        exit_code=exit_code,
        stdout_tail=stdout,
        stderr_tail=stderr,
        summary=summary,
        timed_out=timed_out,
        failure_class=FailureClass.SCRIPT if failed else FailureClass.NONE,
        no_changes=no_changes,
        final_message=run.final_message,
        usage=run.usage,
        denials=run.denials,
    )


def _read_event(adapter: CliAdapter, line: str, run: CliRun) -> None:
    """Fold the line into `run`; each event it yields goes to the job's log as a marked line."""
    seen = len(run.events)
    adapter.read_event(line, run)
    for event in run.events[seen:]:
        sys.stdout.write(event.log_line() + "\n")
    sys.stdout.flush()


def _version_problem(adapter: CliAdapter, executable: str, env: dict[str, str]) -> str:
    """'' when the CLI is the supported version, else what is wrong, naming both versions."""
    try:
        proc = subprocess.run(
            [executable, "--version"],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=VERSION_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"could not ask {executable} for its version: {err}"
    found = adapter.version_from(proc.stdout) if proc.returncode == 0 else ""
    if found != adapter.supported_version:
        shown = found or f"none (exit {proc.returncode}: {_last_line(proc.stderr or proc.stdout)})"
        return (
            f"unsupported {adapter.name} CLI version: found {shown} at {executable}, "
            f"supported {adapter.supported_version} (make agent-clis installs it)"
        )
    return ""


def _prompt_for(adapter: CliAdapter, workspace: CliWorkspace, prompt: str) -> str:
    """The prompt itself, or, past the CLI's input limit, a pointer to it in a file outside the clone."""
    if len(prompt) <= adapter.max_prompt_chars:
        return prompt
    path = workspace.home / PROMPT_FILE
    path.write_text(prompt, encoding="utf-8")
    return (
        f"Your task is too long to show here ({len(prompt)} characters). It is in the file {path}: "
        "read all of it first, then do what it asks in the current working directory."
    )


def _feed(pipe: IO[str] | None, text: str) -> None:
    if pipe is None:
        return
    try:
        pipe.write(text)
        pipe.close()
    except (BrokenPipeError, OSError):
        pass  # the CLI exited without reading it all; its exit code says why


def _changed(repo: Path) -> bool:
    """Any change in the clone: uncommitted (tracked or new) or committed by the CLI itself."""
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )
    if status.stdout.strip():
        return True
    ahead = subprocess.run(
        ["git", "rev-list", "--count", "HEAD", "--not", "--remotes"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )
    return ahead.returncode == 0 and ahead.stdout.strip() not in ("", "0")


def _infrastructure(summary: str, exit_code: int) -> CodingAgentOutcome:
    return CodingAgentOutcome(exit_code=exit_code, summary=summary, failure_class=FailureClass.INFRASTRUCTURE)


class _Echo(threading.Thread):
    """Copies one output pipe to `sink` line by line, keeping the last TAIL_CHARS; each line also goes to
    `on_line` (the adapter's event reader)."""

    def __init__(self, pipe: IO[str] | None, sink: IO[str], on_line=None) -> None:
        super().__init__(daemon=True)
        self._pipe, self._sink, self._on_line = pipe, sink, on_line
        self.tail = ""
        self.start()

    def run(self) -> None:
        if self._pipe is None:
            return
        for line in self._pipe:
            self._sink.write(line)
            self._sink.flush()
            self.tail = (self.tail + line)[-TAIL_CHARS:]
            if self._on_line is not None:
                self._on_line(line)


def _stop_group(proc: subprocess.Popen[str]) -> None:
    """SIGTERM the group, SIGKILL it after a grace period."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            # The group id is the child's pid (new session); it is not reaped yet, so not reused.
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=KILL_GRACE_SECONDS)
            return
        except subprocess.TimeoutExpired:
            continue
    proc.wait()


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:500] if lines else ""
