"""The launchers' configuration (activities/launcher_config.py), built from the process's Settings here
and nowhere else: the activities never see Settings."""

from activities.launcher_config import (
    AgentEnvironment,
    EcsConfig,
    FargateLauncherConfig,
    LaunchConfig,
    LocalLauncherConfig,
)
from conductor_worker.config import Settings


def agent_environment_config(settings: Settings) -> AgentEnvironment:
    return AgentEnvironment(
        gateway_address=settings.agent_gateway_address,
        coding_agent=settings.coding_agent,
        coding_agent_timeout_seconds=settings.coding_agent_timeout_seconds,
        log_spill_bytes=settings.agent_log_spill_bytes,
        model_gateway_url=settings.model_gateway_public_url,
        coding_agent_model=settings.coding_agent_model,
        tls_ca_file=settings.agent_tls_ca_file,
        tls_cert_file=settings.agent_tls_cert_file,
        tls_key_file=settings.agent_tls_key_file,
    )


def launch_config(settings: Settings) -> LaunchConfig:
    return LaunchConfig(
        agent=agent_environment_config(settings),
        jobs_dir=settings.jobs_dir,
        token_secret=settings.signing_secret(),
        token_ttl_seconds=settings.token_ttl_seconds,
        heartbeat_timeout_seconds=settings.agent_heartbeat_timeout_seconds,
    )


def local_launcher_config(settings: Settings) -> LocalLauncherConfig:
    return LocalLauncherConfig(
        launch=launch_config(settings),
        sandbox=settings.sandbox,
        host_task_queue=settings.host_task_queue,
        hidden_dirs=(settings.state_dir, settings.logs_path, settings.blobs_dir),
        seeds_dir=settings.state_dir / "seeds",
    )


def fargate_launcher_config(settings: Settings) -> FargateLauncherConfig:
    """FargateConfigError, naming each missing setting, before anything else is read (the token secret)."""
    ecs = EcsConfig(
        cluster=settings.ecs_cluster,
        subnets=tuple(settings.ecs_subnets),
        security_groups=tuple(settings.ecs_security_groups),
        assign_public_ip=settings.ecs_assign_public_ip,
        task_definition=settings.ecs_task_definition,
        container_name=settings.ecs_container_name,
        region=settings.aws_region,
        endpoint_url=settings.aws_endpoint_url,
        gateway_public_address=settings.gateway_public_address,
    )
    return FargateLauncherConfig(launch=launch_config(settings), ecs=ecs)
