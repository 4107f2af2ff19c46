"""`run_codex` with a fake `codex` on PATH: a timeout kills the process group; stdin is empty."""

import os
import stat
import time
from pathlib import Path

import pytest

from agent_runtime.coding_agents import run_codex
from contracts.jobs import FailureClass
from tests.helpers import is_running


def install_fake_codex(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    codex = bin_dir / "codex"
    codex.write_text(f"#!/bin/sh\ncd {tmp_path}\n{body}")
    codex.chmod(codex.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def gone_soon(pid: int, within: float = 2.0) -> bool:
    # A killed process closes its pipes a moment before it turns into a zombie.
    deadline = time.monotonic() + within
    while is_running(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_timeout_kills_the_process_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    install_fake_codex(
        tmp_path,
        monkeypatch,
        'echo $$ > codex.pid\nsleep 60 &\necho $! > sleep.pid\necho "thinking"\nwait\n',
    )
    started = time.monotonic()

    outcome = run_codex(tmp_path, "fix it", timeout=1)

    assert time.monotonic() - started < 10
    assert outcome.timed_out
    assert outcome.failure_class is FailureClass.SCRIPT
    assert "thinking" in outcome.stdout_tail
    for name in ("codex.pid", "sleep.pid"):
        pid = int((tmp_path / name).read_text())
        assert gone_soon(pid), f"{name} ({pid}) survived the timeout"


def test_stdin_is_empty_and_the_prompt_is_the_last_argument(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    install_fake_codex(
        tmp_path,
        monkeypatch,
        'printf "%s\\n" "$@" > args\n'
        "if IFS= read -r line; then echo got > stdin; else echo EOF > stdin; fi\n"
        'echo "all done"\n',
    )
    # Our own stdin is a pipe nobody writes to: if the agent inherited it, `read` would hang.
    saved = os.dup(0)
    read_end, write_end = os.pipe()
    os.dup2(read_end, 0)
    try:
        started = time.monotonic()
        outcome = run_codex(tmp_path, "fix the login page", timeout=10)
        elapsed = time.monotonic() - started
    finally:
        os.dup2(saved, 0)
        for fd in (saved, read_end, write_end):
            os.close(fd)

    assert elapsed < 5 and not outcome.timed_out
    assert (tmp_path / "stdin").read_text() == "EOF\n"
    assert (tmp_path / "args").read_text().splitlines() == [
        "exec",
        "--full-auto",
        "--skip-git-repo-check",
        "fix the login page",
    ]
    assert (outcome.exit_code, outcome.summary) == (0, "all done")
    assert outcome.failure_class is FailureClass.NONE


def test_nonzero_exit_is_a_script_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    install_fake_codex(tmp_path, monkeypatch, "echo boom >&2\nexit 3\n")
    outcome = run_codex(tmp_path, "p", timeout=10)
    assert (outcome.exit_code, outcome.failure_class) == (3, FailureClass.SCRIPT)
    assert outcome.stderr_tail == "boom\n"


def test_missing_codex_is_an_infrastructure_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    outcome = run_codex(tmp_path, "p", timeout=10)
    assert outcome.failure_class is FailureClass.INFRASTRUCTURE
    assert "not found" in outcome.summary
