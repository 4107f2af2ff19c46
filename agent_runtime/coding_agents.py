"""The coding agents a job can run in its clone: the deterministic built-in `demo`, or Codex CLI."""

import os
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from contracts.jobs import FailureClass, TaskInstructions
from contracts.task_paths import check_relative_path

TAIL_CHARS = 4000
KILL_GRACE_SECONDS = 5.0


@dataclass(frozen=True)
class CodingAgentOutcome:
    exit_code: int
    stdout_tail: str = ""
    stderr_tail: str = ""
    summary: str = ""
    timed_out: bool = False
    # Decided here, where it is known whether the agent failed or could not even start.
    failure_class: FailureClass = FailureClass.NONE


def run_demo_agent(repo_dir: Path, instructions: TaskInstructions, prompt: str) -> CodingAgentOutcome:
    """Make a small, real, repeatable change: a changelog line and the prompt under docs/."""
    key = instructions.ticket_key
    # The key names a file: refuse anything that is not one plain path component.
    if "/" in key:
        raise ValueError(f"ticket key is not a file name: {key!r}")
    ticket_doc = Path(repo_dir, check_relative_path(f"docs/tickets/{key}.md"))
    entry = f"- {key}: {_summary_line(instructions)}"

    changelog = repo_dir / "CHANGELOG.md"
    text = changelog.read_text(encoding="utf-8") if changelog.exists() else "# Changelog\n"
    changelog.write_text(_with_unreleased_entry(text, entry), encoding="utf-8")

    ticket_doc.parent.mkdir(parents=True, exist_ok=True)
    ticket_doc.write_text(prompt if prompt.endswith("\n") else prompt + "\n", encoding="utf-8")
    return CodingAgentOutcome(
        exit_code=0,
        stdout_tail=f"updated CHANGELOG.md and docs/tickets/{key}.md\n",
        summary=f"demo agent: changelog entry and docs/tickets/{key}.md for {key}",
    )


def _summary_line(instructions: TaskInstructions) -> str:
    # job.json has no separate summary: the commit message's first line is "<KEY>: <summary>".
    first = (instructions.commit_message.strip().splitlines() or [""])[0].strip()
    for sep in (":", " "):
        prefix = instructions.ticket_key + sep
        if first.startswith(prefix):
            return first[len(prefix) :].strip()
    return first


def _with_unreleased_entry(text: str, entry: str) -> str:
    """Append `entry` at the end of the `## Unreleased` section, creating the section if needed."""
    lines = text.splitlines()
    if entry in lines:
        return text
    heads = [i for i, line in enumerate(lines) if line.strip().lower() == "## unreleased"]
    if not heads:
        lines += ["", "## Unreleased"]
        heads = [len(lines) - 1]
    head = heads[0]
    # The section ends at the next heading of its level or above; `### Added` stays inside it.
    end = next(
        (i for i in range(head + 1, len(lines)) if lines[i].startswith(("# ", "## "))),
        len(lines),
    )
    insert_at = end
    while insert_at > head + 1 and not lines[insert_at - 1].strip():
        insert_at -= 1
    new = [entry] if insert_at > head + 1 else ["", entry]
    return "\n".join(lines[:insert_at] + new + lines[insert_at:]) + "\n"


def run_codex(repo_dir: Path, prompt: str, timeout: float) -> CodingAgentOutcome:
    """Run `codex exec` in the clone; past `timeout` its whole process group is killed.

    Its output is echoed line by line to our stdout/stderr as it comes (the job's log, when this runs
    as the `code` step), and its tails are kept for the result.
    """
    codex = shutil.which("codex")
    if codex is None:
        return CodingAgentOutcome(
            exit_code=127,
            summary="codex CLI not found on PATH",
            failure_class=FailureClass.INFRASTRUCTURE,
        )
    try:
        # stdin from /dev/null: codex waits on an open stdin. Own session: we can kill its children.
        proc = subprocess.Popen(
            [codex, "exec", "--full-auto", "--skip-git-repo-check", prompt],
            cwd=repo_dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            start_new_session=True,
        )
    except OSError as err:
        return CodingAgentOutcome(
            exit_code=126,
            summary=f"could not start codex: {err}",
            failure_class=FailureClass.INFRASTRUCTURE,
        )
    echoes = [_Echo(proc.stdout, sys.stdout), _Echo(proc.stderr, sys.stderr)]
    try:
        proc.wait(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        _stop_group(proc)
        timed_out = True
    for echo in echoes:
        # Something that left the group (setsid) may still hold a pipe: keep what was read by then.
        echo.join(KILL_GRACE_SECONDS)
    stdout, stderr = echoes[0].tail, echoes[1].tail

    if timed_out:
        summary = f"codex timed out after {timeout:g}s"
    elif proc.returncode != 0:
        summary = f"codex exited with code {proc.returncode}"
    else:
        summary = _last_line(stdout) or "codex finished"
    return CodingAgentOutcome(
        exit_code=proc.returncode,
        stdout_tail=stdout,
        stderr_tail=stderr,
        summary=summary,
        timed_out=timed_out,
        failure_class=FailureClass.SCRIPT if timed_out or proc.returncode else FailureClass.NONE,
    )


class _Echo(threading.Thread):
    """Copies one output pipe to `sink` line by line, keeping the last TAIL_CHARS."""

    def __init__(self, pipe: IO[str] | None, sink: IO[str]) -> None:
        super().__init__(daemon=True)
        self._pipe, self._sink = pipe, sink
        self.tail = ""
        self.start()

    def run(self) -> None:
        if self._pipe is None:
            return
        for line in self._pipe:
            self._sink.write(line)
            self._sink.flush()
            self.tail = (self.tail + line)[-TAIL_CHARS:]


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
