"""How a failure is classed, shared by the conductor and the agent.

Its own module, without pydantic, because the agent's built-in steps (agent_runtime/builtin_steps.py) use
it: each step is a process of its own, and importing pydantic costs each about 0.25 s of CPU.
"""

from enum import StrEnum


class FailureClass(StrEnum):
    NONE = "none"
    SCRIPT = "script"
    NETWORK = "network"
    INFRASTRUCTURE = "infrastructure"
