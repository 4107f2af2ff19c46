"""The app's parameters, read from CDK context (`-c name=value` or `cdk.json`) and checked before synthesis.

Images and the Temporal address have no sensible default, so a missing one stops `cdk synth` with the
flag to add instead of a stack that deploys and then cannot start.
"""

from dataclasses import dataclass

from constructs import Node

REQUIRED = {
    "agentImage": "the per-job agent's image (it must provide `conductor-agent`)",
    "conductorImage": "the conductor's image (the repository's Dockerfile)",
    "temporalAddress": "the Temporal frontend HOST:PORT the conductor connects to",
}

# A bound, not a capacity figure: more replicas than this is a typo more likely than a plan.
MAX_CONDUCTOR_TASKS = 20


@dataclass(frozen=True)
class Parameters:
    agent_image: str
    conductor_image: str
    temporal_address: str
    temporal_namespace: str
    # Empty: the stack creates a small VPC of its own.
    vpc_id: str
    # Conductor replicas (the service's desired count).
    conductor_tasks: int = 1

    @classmethod
    def from_context(cls, node: Node) -> "Parameters":
        missing = [
            f"-c {name}=<{meaning}>" for name, meaning in REQUIRED.items() if not node.try_get_context(name)
        ]
        if missing:
            raise ValueError("missing context: " + "; ".join(missing))
        given = node.try_get_context("conductorTasks")
        tasks = "1" if given is None else str(given)
        if not tasks.isdigit() or not 1 <= int(tasks) <= MAX_CONDUCTOR_TASKS:
            raise ValueError(f"-c conductorTasks={tasks}: a whole number from 1 to {MAX_CONDUCTOR_TASKS}")
        return cls(
            agent_image=node.try_get_context("agentImage"),
            conductor_image=node.try_get_context("conductorImage"),
            temporal_address=node.try_get_context("temporalAddress"),
            temporal_namespace=node.try_get_context("temporalNamespace") or "default",
            vpc_id=node.try_get_context("vpcId") or "",
            conductor_tasks=int(tasks),
        )
