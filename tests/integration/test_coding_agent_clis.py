"""The real Codex CLI and Claude Code through their adapters, against the scripted model server directly.

(The conductor's model gateway sits between them in tests/integration/test_model_gateway*.py and the ticket
tests; here the adapter alone: command line, config, prompt on stdin, event stream, verdict.)
"""

import os
from pathlib import Path

import pytest

from agent_runtime.coding_agents.adapters import CLI_ADAPTERS
from agent_runtime.coding_agents.base import CliWorkspace
from agent_runtime.coding_agents.cli_process import PROMPT_FILE, run_cli
from contracts.agent_events import event_from_log_text
from contracts.jobs import FailureClass
from tests.git_helpers import git
from tests.helpers import use_real_agent_clis
from tests.model_standin import (
    ModelStandin,
    add_file_patch,
    claude_message_turn,
    claude_write_turn,
    codex_message_turn,
    codex_patch_turn,
    messages_turn,
)

TOKEN = "job-token-under-test"
pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def model():
    with ModelStandin(key=TOKEN) as standin:
        yield standin


@pytest.fixture
def workspace(tmp_path: Path, model: ModelStandin, sample_remote: Path, monkeypatch) -> CliWorkspace:
    """A clone of the sample repository, as the `clone` step leaves it."""
    use_real_agent_clis(monkeypatch)
    repo = tmp_path / "repo"
    git("clone", "-q", str(sample_remote), str(repo), cwd=tmp_path)
    return CliWorkspace(
        repo=repo, home=tmp_path / "agent-home", model_gateway_url=model.base_url, model_token=TOKEN
    )


def test_codex_edits_through_apply_patch(workspace: CliWorkspace, model: ModelStandin):
    model.script_responses(
        codex_patch_turn(add_file_patch("hello.txt", "hello from codex")),
        codex_message_turn("Added hello.txt"),
    )
    outcome = run_cli(CLI_ADAPTERS["codex"], workspace, "Add hello.txt", timeout=60)

    assert outcome.failure_class is FailureClass.NONE, outcome.summary
    assert (workspace.repo / "hello.txt").read_text() == "hello from codex\n"
    assert outcome.summary == outcome.final_message == "Added hello.txt"
    assert outcome.usage == {"input": 200, "cached": 0, "output": 40}
    [first, second] = model.requests_to("/v1/responses")
    assert first.headers["authorization"] == f"Bearer {TOKEN}"
    assert "Add hello.txt" in str(first.body["input"])
    assert any(i.get("type") == "custom_tool_call_output" for i in second.body["input"])


def test_claude_edits_through_write(workspace: CliWorkspace, model: ModelStandin):
    model.script_messages(
        claude_write_turn("hello.txt", "hello from claude\n"), claude_message_turn("Wrote it")
    )
    outcome = run_cli(CLI_ADAPTERS["claude"], workspace, "Add hello.txt", timeout=60)

    assert outcome.failure_class is FailureClass.NONE, outcome.summary
    assert (workspace.repo / "hello.txt").read_text() == "hello from claude\n"
    assert outcome.final_message == "Wrote it"
    assert outcome.usage["input"] == 200 and outcome.usage["output"] == 40
    requests = model.requests_to("/v1/messages")
    assert requests and all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in requests)
    # Nothing the CLI wrote for itself (HOME, temporary files) is in the clone.
    assert git("status", "--porcelain", cwd=workspace.repo).split() == ["??", "hello.txt"]


def test_claude_commands_are_reported_with_their_exit_codes(
    workspace: CliWorkspace, model: ModelStandin, capsys
):
    """Read from the tool results in Claude Code's stream: a failing command, a passing one, a refused one."""

    def bash(call_id: str, command: str):
        return messages_turn(
            {
                "type": "tool_use",
                "id": call_id,
                "name": "Bash",
                "input": {"command": command, "description": "x"},
            }
        )

    model.script_messages(
        bash("toolu_1", "ls no-such-dir"),
        bash("toolu_2", "ls"),
        bash("toolu_3", "echo hi; exit 3"),  # compound: acceptEdits mode refuses it unasked
        claude_write_turn("hello.txt", "hello\n"),
        claude_message_turn("Done"),
    )
    outcome = run_cli(CLI_ADAPTERS["claude"], workspace, "Look around", timeout=60)

    assert outcome.failure_class is FailureClass.NONE, outcome.summary
    # The events as the job's log receives them (the runner writes each as a marked line).
    events = [event_from_log_text(line) for line in capsys.readouterr().out.splitlines()]
    commands = [(e.summary, e.exit_code) for e in events if e is not None and e.kind == "command"]
    assert commands == [("ls no-such-dir", 2), ("ls", 0), ("echo hi; exit 3", None)]
    assert any("exit 3" in denial for denial in outcome.denials)


@pytest.mark.parametrize("cli", ["codex", "claude"])
def test_exit_0_without_a_change_is_a_failure(cli: str, workspace: CliWorkspace, model: ModelStandin):
    model.script_responses(codex_message_turn("I looked and changed nothing"))
    model.script_messages(claude_message_turn("I looked and changed nothing"))

    outcome = run_cli(CLI_ADAPTERS[cli], workspace, "Look around", timeout=60)

    assert outcome.exit_code == 0
    assert outcome.no_changes and outcome.failure_class is FailureClass.SCRIPT
    assert outcome.summary == f"{cli} finished without changing anything: I looked and changed nothing"


@pytest.mark.parametrize("cli", ["codex", "claude"])
def test_a_1mb_ticket_reaches_the_cli(cli: str, workspace: CliWorkspace, model: ModelStandin):
    description = "".join(f"line {n} of a very long ticket\n" for n in range(40_000))  # > 1 MiB
    assert len(description) > 1 << 20
    model.script_responses(codex_message_turn("read it"))
    model.script_messages(claude_message_turn("read it"))

    run_cli(CLI_ADAPTERS[cli], workspace, description, timeout=60)

    [first, *_] = model.requests_to("/v1/responses" if cli == "codex" else "/v1/messages")
    if cli == "claude":
        assert "line 39999 of a very long ticket" in str(first.body["messages"])
    else:
        # Past codex's input limit (1,048,576 characters) the ticket travels as a file the prompt names.
        task = workspace.home / PROMPT_FILE
        assert task.read_text() == description
        assert str(task) in str(first.body["input"])


def test_an_unsupported_version_is_a_named_infrastructure_failure(
    workspace: CliWorkspace, tmp_path, monkeypatch
):
    bin_dir = tmp_path / "old-bin"
    bin_dir.mkdir()
    (bin_dir / "codex").write_text('#!/bin/sh\necho "codex-cli 0.98.0"\n')
    (bin_dir / "codex").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")

    outcome = run_cli(CLI_ADAPTERS["codex"], workspace, "p", timeout=60)

    assert outcome.failure_class is FailureClass.INFRASTRUCTURE
    assert "found 0.98.0" in outcome.summary and "supported 0.169.0" in outcome.summary
