"""The coding agents a job can run in its clone.

    demo     deterministic, built in, offline (the default): coding_agents/demo.py
    codex    Codex CLI 0.169.0 through the conductor's model gateway: coding_agents/codex.py
    claude   Claude Code 2.1.332 through the conductor's model gateway: coding_agents/claude.py

The CLIs share one interface (coding_agents/base.py) and one runner (coding_agents/cli_process.py); their
registry is coding_agents/adapters.py. Nothing is imported here: the demo agent's step loads only demo.py.
"""
