"""The CLI coding agents by name, as `--coding-agent` takes them."""

from agent_runtime.coding_agents.base import CliAdapter
from agent_runtime.coding_agents.claude import ClaudeAdapter
from agent_runtime.coding_agents.codex import CodexAdapter

CLI_ADAPTERS: dict[str, CliAdapter] = {adapter.name: adapter for adapter in (CodexAdapter(), ClaudeAdapter())}
CODING_AGENTS = ("demo", *CLI_ADAPTERS)
