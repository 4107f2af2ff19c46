"""Temporal activities: one module per external system (git, GitHub, launchers, task files)."""
