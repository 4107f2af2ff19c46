"""`run_cli` with a stand-in `codex` on PATH: a timeout kills the process group; the prompt is on stdin."""

import os
import time
from pathlib import Path

import pytest

from agent_runtime.coding_agents.adapters import CLI_ADAPTERS
from agent_runtime.coding_agents.base import CliWorkspace
from agent_runtime.coding_agents.cli_process import run_cli
from contracts.jobs import FailureClass
from tests.helpers import install_fake_codex, is_running


def fake_codex(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> CliWorkspace:
    install_fake_codex(tmp_path / "bin", f"#!/bin/sh\ncd {tmp_path}\n{body}", monkeypatch)
    return CliWorkspace(
        repo=tmp_path, home=tmp_path / "home", model_gateway_url="http://127.0.0.1:9", model_token="t"
    )


def run(workspace: CliWorkspace, prompt: str, timeout: float):
    return run_cli(CLI_ADAPTERS["codex"], workspace, prompt, timeout)


def gone_soon(pid: int, within: float = 2.0) -> bool:
    # A killed process closes its pipes a moment before it turns into a zombie.
    deadline = time.monotonic() + within
    while is_running(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_timeout_kills_the_process_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    workspace = fake_codex(
        tmp_path, monkeypatch, 'echo $$ > codex.pid\nsleep 60 &\necho $! > sleep.pid\necho "thinking"\nwait\n'
    )
    started = time.monotonic()

    outcome = run(workspace, "fix it", timeout=1)

    assert time.monotonic() - started < 10
    assert outcome.timed_out
    assert outcome.failure_class is FailureClass.SCRIPT
    assert "thinking" in outcome.stdout_tail
    for name in ("codex.pid", "sleep.pid"):
        pid = int((tmp_path / name).read_text())
        assert gone_soon(pid), f"{name} ({pid}) survived the timeout"


def test_the_prompt_goes_to_stdin_never_into_argv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    workspace = fake_codex(
        tmp_path, monkeypatch, 'printf "%s\\n" "$@" > args\ncat > stdin\necho changed > new.txt\n'
    )
    # Our own stdin is a pipe nobody writes to: if the CLI inherited it, `cat` would hang.
    saved = os.dup(0)
    read_end, write_end = os.pipe()
    os.dup2(read_end, 0)
    try:
        started = time.monotonic()
        outcome = run(workspace, "fix the login page", timeout=10)
        elapsed = time.monotonic() - started
    finally:
        os.dup2(saved, 0)
        for fd in (saved, read_end, write_end):
            os.close(fd)

    assert elapsed < 5 and not outcome.timed_out
    assert (tmp_path / "stdin").read_text() == "fix the login page"
    assert (tmp_path / "args").read_text().splitlines() == [
        "exec",
        "--json",
        "--sandbox",
        "danger-full-access",
        "--skip-git-repo-check",
        "--disable",
        "unbounded_connection_retries",
        "-",
    ]


def test_nonzero_exit_is_a_script_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    workspace = fake_codex(tmp_path, monkeypatch, "echo boom >&2\nexit 3\n")
    outcome = run(workspace, "p", timeout=10)
    assert (outcome.exit_code, outcome.failure_class) == (3, FailureClass.SCRIPT)
    assert outcome.stderr_tail == "boom\n"
    assert outcome.summary == "codex exited with code 3: boom"


def test_missing_codex_is_an_infrastructure_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    workspace = CliWorkspace(
        repo=tmp_path, home=tmp_path / "home", model_gateway_url="http://x", model_token="t"
    )
    outcome = run(workspace, "p", timeout=10)
    assert outcome.failure_class is FailureClass.INFRASTRUCTURE
    assert "not found" in outcome.summary
