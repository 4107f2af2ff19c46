"""Claude Code (npm `@anthropic-ai/claude-code`), pointed at the conductor's model gateway (Anthropic Messages).

    claude -p --output-format stream-json --verbose --permission-mode acceptEdits < prompt

`ANTHROPIC_BASE_URL` is the gateway and `ANTHROPIC_AUTH_TOKEN` the job token (sent as a bearer token);
no provider key. HOME and every temporary directory live in the job's workspace (it writes under /tmp
otherwise), and the non-essential traffic (telemetry, updates) is off, so nothing leaves for the internet.
"""

import json
import os
import re

from agent_runtime.coding_agents.base import CliAdapter, CliRun, CliWorkspace, json_object
from contracts.agent_events import AgentEvent, short

SUPPORTED_VERSION = "2.1.332"


class ClaudeAdapter(CliAdapter):
    name = "claude"
    executable = "claude"
    supported_version = SUPPORTED_VERSION

    def version_from(self, version_output: str) -> str:
        # "2.1.332 (Claude Code)"
        return (version_output.split() or [""])[0]

    def command(self, executable: str, workspace: CliWorkspace) -> list[str]:
        command = [
            executable,
            "-p",  # no prompt argument: it is read from stdin
            "--output-format",
            "stream-json",
            "--verbose",
            # Edits in the working directory are allowed; bypassing permissions is refused as root.
            "--permission-mode",
            "acceptEdits",
        ]
        model = os.environ.get("CONDUCTOR_AGENT_MODEL")
        return [*command, "--model", model] if model else command

    def environment(self, workspace: CliWorkspace) -> dict[str, str]:
        tmp = str(workspace.home / "tmp")
        return {
            "HOME": str(workspace.home),
            "TMPDIR": tmp,
            "CLAUDE_CODE_TMPDIR": tmp,
            "XDG_RUNTIME_DIR": tmp,
            "ANTHROPIC_BASE_URL": workspace.model_gateway_url.rstrip("/"),
            "ANTHROPIC_AUTH_TOKEN": workspace.model_token,
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_TELEMETRY": "1",
            "DISABLE_AUTOUPDATER": "1",
            # The gateway already retried the provider; a few retries of its own, never ten with backoff.
            "CLAUDE_CODE_MAX_RETRIES": "2",
        }

    def write_config(self, workspace: CliWorkspace) -> None:
        (workspace.home / "tmp").mkdir(parents=True, exist_ok=True)

    def read_event(self, line: str, run: CliRun) -> None:
        event = json_object(line)
        kind = event.get("type")
        if kind == "assistant":
            for block in (event.get("message") or {}).get("content", []):
                tool_input = block.get("input") or {}
                if block.get("type") == "text" and block.get("text"):
                    run.final_message = str(block["text"])
                    run.events.append(AgentEvent(kind="message", summary=short(run.final_message)))
                elif block.get("type") == "tool_use" and block.get("name") in ("Write", "Edit"):
                    path = str(tool_input.get("file_path", ""))
                    run.files_changed.append(path)
                    run.events.append(
                        AgentEvent(kind="file_change", summary=str(block["name"]), files=[path])
                    )
                elif block.get("type") == "tool_use" and block.get("name") == "Bash":
                    # Logged once its result is in, with the exit code (`_command_ended`).
                    run.pending_commands[str(block.get("id", ""))] = short(str(tool_input.get("command", "")))
        elif kind == "user":
            for block in (event.get("message") or {}).get("content", []):
                if isinstance(block, dict) and block.get("type") == "tool_result":
                    _command_ended(block, event, run)
        elif kind == "result":
            for command in run.pending_commands.values():  # never answered: the CLI stopped first
                run.events.append(AgentEvent(kind="command", summary=command))
            run.pending_commands.clear()
            run.succeeded = event.get("subtype") == "success" and not event.get("is_error")
            if event.get("result"):
                run.final_message = str(event["result"])
            if not run.succeeded:
                run.errors.append(str(event.get("result") or event.get("subtype") or "error"))
                run.events.append(AgentEvent(kind="error", summary=short(run.errors[-1])))
            usage = event.get("usage") or {}
            run.usage = {
                "input": int(usage.get("input_tokens", 0)),
                "cached": int(usage.get("cache_read_input_tokens", 0)),
                "output": int(usage.get("output_tokens", 0)),
            }
            run.denials = [
                f"{d.get('tool_name', '?')} {json.dumps(d.get('tool_input', {}))[:200]}"
                for d in event.get("permission_denials", [])
            ]


# Claude Code reports a Bash command's end as a `tool_result` in a "user" event (2.1.332): `is_error` false
# for exit 0; otherwise content "Exit code N\n<output>"; a command it refused to run (permissions) carries a
# `non_execution_kind` in `tool_result_meta` and has no exit code.
_EXIT_CODE = re.compile(r"^Exit code (\d+)")


def _command_ended(block: dict, event: dict, run: CliRun) -> None:
    call_id = str(block.get("tool_use_id", ""))
    command = run.pending_commands.pop(call_id, None)
    if command is None:
        return  # the result of another tool (Write, Edit, ...)
    meta = next((m for m in event.get("tool_result_meta") or [] if m.get("id") == call_id), {})
    exit_code = None
    if not meta.get("non_execution_kind"):
        content = block.get("content")
        if isinstance(content, list):
            content = "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
        match = _EXIT_CODE.match(str(content or ""))
        exit_code = int(match.group(1)) if match else (None if block.get("is_error") else 0)
    run.events.append(AgentEvent(kind="command", summary=command, exit_code=exit_code))
