"""The coding agents a job can run in its clone.

    demo     deterministic, built in, offline (the default): coding_agents/demo.py
    codex    Codex CLI 0.169.0 through the conductor's model gateway: coding_agents/codex.py
    claude   Claude Code 2.1.332 through the conductor's model gateway: coding_agents/claude.py

The CLIs share one interface (coding_agents/base.py) and one runner (coding_agents/cli_process.py).
"""

from agent_runtime.coding_agents.base import CliAdapter
from agent_runtime.coding_agents.claude import ClaudeAdapter
from agent_runtime.coding_agents.codex import CodexAdapter

CLI_ADAPTERS: dict[str, CliAdapter] = {adapter.name: adapter for adapter in (CodexAdapter(), ClaudeAdapter())}
CODING_AGENTS = ("demo", *CLI_ADAPTERS)
