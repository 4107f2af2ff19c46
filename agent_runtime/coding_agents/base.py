"""What every coding agent run shares: its outcome, its workspace, and the interface a CLI adapter fills in.

An adapter (agent_runtime/coding_agents/codex.py, claude.py) knows one CLI: its command line, the
environment and config files it needs in the job's workspace, how to read its JSON event stream, and
whether the CLI itself says it succeeded. agent_runtime/coding_agents/cli_process.py runs any adapter the
same way and adds the check no CLI makes: that the clone actually changed.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from contracts.failures import FailureClass

if TYPE_CHECKING:  # pydantic stays out of the demo agent's code step (contracts/failures.py says why)
    from contracts.agent_events import AgentEvent

TAIL_CHARS = 4000
KILL_GRACE_SECONDS = 5.0
# Inherited by the CLI when set: locale and PATH behave as for the operator, TRACEPARENT (the job's trace
# context, not a secret) lets a CLI that traces join the job's trace. Nothing else of the agent's
# environment (its gateway token variable, TLS paths) reaches the CLI or the commands it runs.
INHERITED_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "TRACEPARENT")


@dataclass(frozen=True)
class CodingAgentOutcome:
    exit_code: int
    stdout_tail: str = ""
    stderr_tail: str = ""
    summary: str = ""
    timed_out: bool = False
    # Decided here, where it is known whether the agent failed or could not even start.
    failure_class: FailureClass = FailureClass.NONE
    # The CLI exited 0 but the clone is unchanged: reported as a failure, with the agent's last words.
    no_changes: bool = False
    final_message: str = ""
    # Model tokens the CLI itself counted ({"input": .., "cached": .., "output": ..}); the gateway keeps its own.
    usage: dict[str, int] = field(default_factory=dict)
    # Tools the CLI refused to run (Claude Code's permission_denials), reported, never silently dropped.
    denials: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CliWorkspace:
    """Where a CLI runs: the clone (its working directory) and a home beside it, outside the clone, for its
    HOME, config and temporary files, so none of them ends up in the diff."""

    repo: Path
    home: Path
    # The conductor's model gateway (http://host:port, no path) and the job token the CLI presents to it.
    model_gateway_url: str
    model_token: str


@dataclass
class CliRun:
    """What the adapter read from the CLI's event stream so far."""

    succeeded: bool = False
    final_message: str = ""
    errors: list[str] = field(default_factory=list)
    usage: dict[str, int] = field(default_factory=dict)
    denials: list[str] = field(default_factory=list)
    files_changed: list[str] = field(default_factory=list)
    # What the agent did, in order (contracts/agent_events.py); the runner logs each as it comes.
    events: list[AgentEvent] = field(default_factory=list)
    # Commands the CLI started and has not reported the end of yet, by the CLI's own call id.
    pending_commands: dict[str, str] = field(default_factory=dict)


class CliAdapter(ABC):
    name: str
    executable: str
    supported_version: str
    # Longer prompts go to a file in the workspace home and the CLI is told to read it.
    max_prompt_chars: int = 1 << 30

    @abstractmethod
    def version_from(self, version_output: str) -> str:
        """The version in what `<executable> --version` printed."""

    @abstractmethod
    def command(self, executable: str, workspace: CliWorkspace) -> list[str]:
        """The command line; the prompt goes to stdin, never into argv."""

    @abstractmethod
    def environment(self, workspace: CliWorkspace) -> dict[str, str]:
        """Variables on top of INHERITED_ENV."""

    @abstractmethod
    def write_config(self, workspace: CliWorkspace) -> None:
        """Config files (and directories) the CLI needs, written under workspace.home."""

    @abstractmethod
    def read_event(self, line: str, run: CliRun) -> None:
        """Fold one stdout line (a JSON event, or anything else the CLI printed) into `run`."""


def json_object(line: str) -> dict:
    """One JSON event line as a dict; {} for anything else the CLI printed."""
    try:
        value = json.loads(line)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
