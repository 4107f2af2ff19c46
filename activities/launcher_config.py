"""What the launchers need from the conductor's configuration, and nothing else.

Built from the process's Settings in one place (conductor_worker/process/worker.py), so activities never
import the conductor process. Frozen dataclasses rather than pydantic models: they never cross Temporal,
one holds the token secret (kept out of their repr), and a missing Fargate setting is raised as the
FargateConfigError that names it, not wrapped in a ValidationError.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal


class FargateConfigError(ValueError):
    """`launcher=fargate` without the settings it needs; names each missing one."""


@dataclass(frozen=True)
class AgentEnvironment:
    """What every launcher hands its agent (activities/agent_env.py)."""

    # Where the agents dial the gateways: the public address, or the listen address when none is set.
    gateway_address: str
    coding_agent: str
    coding_agent_timeout_seconds: int
    log_spill_bytes: int
    # Empty: the agent gets no model gateway (the `demo` coding agent needs none).
    model_gateway_url: str = ""
    coding_agent_model: str = ""
    # The CA the agent verifies the gateway with and, for mTLS, its client certificate and key.
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None


@dataclass(frozen=True)
class LaunchConfig:
    """What both launchers need: the agent's environment, the job attempt records, the per-job tokens."""

    agent: AgentEnvironment
    # The job attempt directories (stores/job_store.py), where each launch is recorded.
    jobs_dir: Path
    # Signs the per-job agent tokens (security/tokens.py).
    token_secret: bytes = field(repr=False)
    token_ttl_seconds: int
    # The await activity's heartbeat timeout for the launched agent (three heartbeat intervals).
    heartbeat_timeout_seconds: float


@dataclass(frozen=True)
class LocalLauncherConfig:
    launch: LaunchConfig
    sandbox: Literal["bwrap", "unsafe"]
    # This replica's own task queue, where it watches and stops the agents it starts.
    host_task_queue: str
    # What the sandbox hides from the agent: the conductor's state directory, logs and blobs.
    hidden_dirs: tuple[Path, ...]
    # Read-only seeds of local remotes, mounted into the sandbox instead of the remote itself.
    seeds_dir: Path


@dataclass(frozen=True)
class EcsConfig:
    """Where the Fargate launcher runs its tasks; refuses to exist without what it needs."""

    cluster: str
    subnets: tuple[str, ...]
    security_groups: tuple[str, ...]
    assign_public_ip: bool
    # The route's agent_image wins; empty and no agent_image: the launch fails for good.
    task_definition: str
    # Empty: the task definition's only container.
    container_name: str
    region: str
    # Set for moto or LocalStack; empty: the real endpoint.
    endpoint_url: str
    # Set explicitly: the listen address is usually loopback, which a task in the VPC cannot dial.
    gateway_public_address: str

    def __post_init__(self) -> None:
        missing = [
            name
            for name, value in (
                ("CONDUCTOR_ECS_CLUSTER", self.cluster),
                ("CONDUCTOR_ECS_SUBNETS", self.subnets),
                ("CONDUCTOR_GATEWAY_PUBLIC_ADDRESS", self.gateway_public_address),
            )
            if not value
        ]
        if missing:
            raise FargateConfigError(
                f'CONDUCTOR_LAUNCHER=fargate needs {", ".join(missing)} (README "Fargate launcher")'
            )


@dataclass(frozen=True)
class FargateLauncherConfig:
    launch: LaunchConfig
    ecs: EcsConfig
