"""The agent binary, `conductor-agent`: takes a job from the conductor's gateway, does it, reports.

It sees only `contracts` and the generated protobuf modules, never Temporal, GitHub or cloud
credentials.
"""

__version__ = "0.1.0"
