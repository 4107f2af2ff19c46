"""`python -m agent_runtime`: the same as the `conductor-agent` console script."""

from agent_runtime.cli import main

main()
