"""Codex CLI (npm `@openai/codex`), pointed at the conductor's model gateway (OpenAI Responses API).

    CODEX_HOME=<home>/codex codex exec --json --sandbox danger-full-access --skip-git-repo-check \
        --disable unbounded_connection_retries - < prompt

`$CODEX_HOME/config.toml` names the gateway as the only model provider, with the job token (never a
provider key) as its credential. `--sandbox danger-full-access`: codex's own sandbox cannot run inside
the product's (bubblewrap) sandbox, which is the boundary; see README "Coding agents". Codex refuses an
input over 1,048,576 characters, so a longer prompt is handed over as a file (CliAdapter.max_prompt_chars).
"""

import json
import os

from agent_runtime.coding_agents.base import CliAdapter, CliRun, CliWorkspace, json_object
from contracts.agent_events import AgentEvent, short

SUPPORTED_VERSION = "0.169.0"
# A model codex knows (`codex debug models`); an unknown name gets no apply_patch tool.
DEFAULT_MODEL = "gpt-5.5"
TOKEN_VARIABLE = "CONDUCTOR_MODEL_TOKEN"
PROVIDER = "conductor"


class CodexAdapter(CliAdapter):
    name = "codex"
    executable = "codex"
    supported_version = SUPPORTED_VERSION
    # Codex's own input limit is 1,048,576 characters; the rest is room for what codex adds.
    max_prompt_chars = 1_000_000

    def version_from(self, version_output: str) -> str:
        # "codex-cli 0.169.0"
        return version_output.strip().rsplit(" ", 1)[-1]

    def command(self, executable: str, workspace: CliWorkspace) -> list[str]:
        return [
            executable,
            "exec",
            "--json",
            "--sandbox",
            "danger-full-access",
            "--skip-git-repo-check",
            # Without it codex retries an unreachable gateway for ever.
            "--disable",
            "unbounded_connection_retries",
            "-",  # the prompt comes on stdin
        ]

    def environment(self, workspace: CliWorkspace) -> dict[str, str]:
        return {
            "HOME": str(workspace.home),
            "CODEX_HOME": str(workspace.home / "codex"),
            "TMPDIR": str(workspace.home / "tmp"),
            TOKEN_VARIABLE: workspace.model_token,
        }

    def write_config(self, workspace: CliWorkspace) -> None:
        model = os.environ.get("CONDUCTOR_AGENT_MODEL") or DEFAULT_MODEL
        codex_home = workspace.home / "codex"
        codex_home.mkdir(parents=True, exist_ok=True)
        (workspace.home / "tmp").mkdir(parents=True, exist_ok=True)
        (codex_home / "config.toml").write_text(
            f"model = {json.dumps(model)}\n"
            f'model_provider = "{PROVIDER}"\n'
            "\n"
            f"[model_providers.{PROVIDER}]\n"
            'name = "Agent Conductor model gateway"\n'
            f"base_url = {json.dumps(workspace.model_gateway_url.rstrip('/') + '/v1')}\n"
            'wire_api = "responses"\n'
            f'env_key = "{TOKEN_VARIABLE}"\n'
            # The gateway retries the provider (429/5xx before the first byte); a stream cut mid-way is
            # the job's failure, not a silent replay.
            "request_max_retries = 2\n"
            "stream_max_retries = 0\n"
            "\n"
            "[analytics]\n"
            "enabled = false\n"
            "\n"
            "[features]\n"
            "plugins = false\n",
            encoding="utf-8",
        )

    def read_event(self, line: str, run: CliRun) -> None:
        event = json_object(line)
        kind = event.get("type")
        if kind == "turn.completed":
            run.succeeded = True
            usage = event.get("usage") or {}
            run.usage = {
                "input": int(usage.get("input_tokens", 0)),
                "cached": int(usage.get("cached_input_tokens", 0)),
                "output": int(usage.get("output_tokens", 0)),
            }
        elif kind == "turn.failed":
            run.succeeded = False
            run.errors.append(str((event.get("error") or {}).get("message", "turn failed")))
            run.events.append(AgentEvent(kind="error", summary=short(run.errors[-1])))
        elif kind == "error":
            run.errors.append(str(event.get("message", "error")))
            run.events.append(AgentEvent(kind="error", summary=short(run.errors[-1])))
        elif kind == "item.completed":
            self._item(event.get("item") or {}, run)

    def _item(self, item: dict, run: CliRun) -> None:
        kind = item.get("type")
        if kind == "agent_message":
            run.final_message = str(item.get("text", ""))
            run.events.append(AgentEvent(kind="message", summary=short(run.final_message)))
        elif kind == "file_change":
            paths = [str(c.get("path", "")) for c in item.get("changes", [])]
            run.files_changed += paths
            kinds = sorted({str(c.get("kind", "update")) for c in item.get("changes", [])})
            run.events.append(
                AgentEvent(kind="file_change", summary=", ".join(kinds) or "change", files=paths)
            )
        elif kind == "command_execution":
            code = item.get("exit_code")
            run.events.append(
                AgentEvent(
                    kind="command",
                    summary=short(str(item.get("command", ""))),
                    exit_code=int(code) if isinstance(code, int) else None,
                )
            )
        elif kind == "error":
            run.errors.append(str(item.get("message", "error")))
            run.events.append(AgentEvent(kind="error", summary=short(run.errors[-1])))
