"""The Fargate launcher against moto's ECS over real HTTP: what RunTask receives, idempotency, stop.

moto records tasks but runs no containers, so the agent inside is not exercised here (the local launcher's
tests run real agents); what is checked is every request the conductor makes to ECS.
"""

import json
from pathlib import Path

import boto3
import pytest
import requests
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.launch_fargate import FargateLauncher, ecs_client, task_arn
from activities.launcher_config import FargateConfigError
from conductor_worker.config import Settings
from conductor_worker.process.launcher_settings import fargate_launcher_config
from conductor_worker.process.worker import build_launcher
from contracts.activity_io import LaunchAgentInput, StopAgentInput
from security.tokens import verify_token

CREDENTIALS = {
    "GITHUB_TOKEN": "ghp_x",
    "CONDUCTOR_GITHUB_TOKEN": "ghp_x",
    "AWS_SESSION_TOKEN": "aws-session",
    "TEMPORAL_ADDRESS": "t:7233",
    "OPENAI_API_KEY": "sk-x",
}
REGION = "us-east-1"
JOB = LaunchAgentInput(job_id="job/ticket/jira/ENG-7", attempt=1)


def register_agent_task_definition(ecs, family: str) -> None:
    ecs.register_task_definition(
        family=family,
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="512",
        memory="1024",
        # moto answers RunTask with a 500 unless each container has `memory`.
        containerDefinitions=[{"name": "agent", "image": f"acme/{family}:1", "memory": 1024}],
    )


@pytest.fixture
def fargate_settings(aws: str, tmp_path: Path) -> Settings:
    # Tasks stay RUNNING until stopped; by default moto advances them one status per DescribeTasks.
    requests.post(
        f"{aws}/moto-api/state-manager/set-transition",
        json={"model_name": "ecs::task", "transition": {"progression": "manual", "times": 1000000}},
        timeout=10,
    ).raise_for_status()
    ec2 = boto3.client("ec2", endpoint_url=aws, region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    # moto gives the task's network interface a DNS name, which needs DNS hostnames on the VPC.
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="agents", Description="agents", VpcId=vpc)["GroupId"]
    ecs = boto3.client("ecs", endpoint_url=aws, region_name=REGION)
    ecs.create_cluster(clusterName="agents")
    register_agent_task_definition(ecs, "agent-default")
    register_agent_task_definition(ecs, "agent-platform")
    return Settings(
        state_dir=tmp_path / "state",
        token_secret="s" * 32,
        launcher="fargate",
        gateway_public_address="conductor.internal:50051",
        aws_region=REGION,
        aws_endpoint_url=aws,
        ecs_cluster="agents",
        ecs_task_definition="agent-default",
        ecs_subnets=[subnet],
        ecs_security_groups=[group],
    )


@pytest.fixture
def launcher(fargate_settings: Settings) -> FargateLauncher:
    launcher = build_launcher(fargate_settings)
    assert isinstance(launcher, FargateLauncher)
    return launcher


def ecs_of(settings: Settings):
    return ecs_client(fargate_launcher_config(settings).ecs)


def describe(settings: Settings, agent_id: str) -> dict:
    ecs = ecs_of(settings)
    return ecs.describe_tasks(cluster=settings.ecs_cluster, tasks=[task_arn(agent_id)], include=["TAGS"])[
        "tasks"
    ][0]


def agent_tasks(settings: Settings) -> list[str]:
    return ecs_of(settings).list_tasks(cluster=settings.ecs_cluster)["taskArns"]


async def test_the_task_gets_the_agent_command_and_only_the_agent_environment(
    launcher, fargate_settings, monkeypatch
):
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    launched = await ActivityEnvironment().run(launcher.launch_agent, JOB)

    assert launched.launcher == "fargate" and launched.agent_id.startswith("fargate:arn:aws:ecs:")
    # No launching-host queue: DescribeTasks and StopTask work from any replica.
    assert launched.host_task_queue == ""
    task = describe(fargate_settings, launched.agent_id)
    assert task["launchType"] == "FARGATE"
    assert ":task-definition/agent-default:" in task["taskDefinitionArn"]
    [override] = task["overrides"]["containerOverrides"]
    assert override["name"] == "agent" and override["command"] == ["conductor-agent", "run"]
    env = {item["name"]: item["value"] for item in override["environment"]}
    assert set(env) == {
        "CONDUCTOR_AGENT_GATEWAY",
        "CONDUCTOR_AGENT_TOKEN",
        "CONDUCTOR_AGENT_CODING_AGENT",
        "CONDUCTOR_AGENT_CODING_AGENT_TIMEOUT",
        "CONDUCTOR_AGENT_LOG_SPILL_BYTES",
    }
    assert env["CONDUCTOR_AGENT_GATEWAY"] == "conductor.internal:50051"
    claims = verify_token(fargate_settings.signing_secret(), env["CONDUCTOR_AGENT_TOKEN"])
    assert (claims.job_id, claims.attempt) == (JOB.job_id, JOB.attempt)
    assert not set(CREDENTIALS.values()) & set(env.values())
    # The task's network interface is in the configured subnet; the task is tagged with its job.
    details = {d["name"]: d["value"] for d in task["attachments"][0]["details"]}
    assert details["subnetId"] == fargate_settings.ecs_subnets[0]
    assert {"key": "conductor:job-id", "value": JOB.job_id} in task["tags"]
    assert launcher.is_alive(launched.agent_id)


async def test_the_routes_task_definition_wins_over_the_default(launcher, fargate_settings):
    job = JOB.model_copy(update={"agent_image": "agent-platform"})
    launched = await ActivityEnvironment().run(launcher.launch_agent, job)
    task = describe(fargate_settings, launched.agent_id)
    assert ":task-definition/agent-platform:" in task["taskDefinitionArn"]


async def test_a_retried_launch_finds_the_task_it_started(launcher, fargate_settings):
    env = ActivityEnvironment()
    first = await env.run(launcher.launch_agent, JOB)
    assert (await env.run(launcher.launch_agent, JOB)).agent_id == first.agent_id
    # The conductor died between RunTask and writing its record: the task is found by startedBy.
    record = fargate_settings.jobs_dir / "job_ticket_jira_ENG-7" / "attempt-1" / "agent.json"
    assert json.loads(record.read_text())["agent_id"] == first.agent_id
    record.unlink()
    assert (await env.run(launcher.launch_agent, JOB)).agent_id == first.agent_id
    assert agent_tasks(fargate_settings) == [task_arn(first.agent_id)]
    # The next attempt is another task.
    second = await env.run(launcher.launch_agent, JOB.model_copy(update={"attempt": 2}))
    assert second.agent_id != first.agent_id and len(agent_tasks(fargate_settings)) == 2


async def test_stop_stops_the_task_and_a_second_stop_is_fine(launcher, fargate_settings):
    env = ActivityEnvironment()
    launched = await env.run(launcher.launch_agent, JOB)
    assert launcher.is_alive(launched.agent_id)
    stop = StopAgentInput(job_id=JOB.job_id, attempt=1, agent_id=launched.agent_id, reason="cancelled by ops")
    await env.run(launcher.stop_agent, stop)
    task = describe(fargate_settings, launched.agent_id)
    assert task["lastStatus"] == "STOPPED" and task["stoppedReason"] == "conductor: cancelled by ops"
    assert not launcher.is_alive(launched.agent_id)
    await env.run(launcher.stop_agent, stop)
    # The attempt keeps its one task: the watcher reports the crash, the workflow launches a new attempt.
    assert (await env.run(launcher.launch_agent, JOB)).agent_id == launched.agent_id
    assert agent_tasks(fargate_settings) == [task_arn(launched.agent_id)]


async def test_a_repeated_run_task_sends_the_same_request(launcher, fargate_settings):
    """Real ECS answers a repeated clientToken with the first task only if nothing else changed."""
    env = ActivityEnvironment()
    first = await env.run(launcher.launch_agent, JOB)
    # Died before its record, and the task has stopped since, so neither record nor lookup finds it.
    attempt_dir = fargate_settings.jobs_dir / "job_ticket_jira_ENG-7" / "attempt-1"
    (attempt_dir / "agent.json").unlink()
    ecs_of(fargate_settings).stop_task(cluster="agents", task=task_arn(first.agent_id), reason="test")
    # Another conductor, configured differently, would build another request; it resends the first.
    changed = fargate_settings.model_copy(update={"coding_agent_timeout_seconds": 99})
    again = await env.run(build_launcher(changed).launch_agent, JOB)
    assert again.agent_id != first.agent_id  # moto ignores clientToken; real ECS would return `first`
    overrides = [describe(fargate_settings, a.agent_id)["overrides"] for a in (first, again)]
    assert overrides[0] == overrides[1]
    assert oct((attempt_dir / "run-task.json").stat().st_mode & 0o777) == "0o600"


def test_startup_names_every_missing_setting(tmp_path):
    settings = Settings(state_dir=tmp_path, launcher="fargate")
    with pytest.raises(FargateConfigError) as raised:
        build_launcher(settings)
    for name in ("CONDUCTOR_ECS_CLUSTER", "CONDUCTOR_ECS_SUBNETS", "CONDUCTOR_GATEWAY_PUBLIC_ADDRESS"):
        assert name in str(raised.value)


@pytest.mark.parametrize(
    ("update", "job", "names"),
    [
        ({"ecs_task_definition": "nope"}, JOB, "CONDUCTOR_ECS_TASK_DEFINITION"),
        ({}, JOB.model_copy(update={"agent_image": "nope"}), "the route's agent_image"),
        ({"ecs_task_definition": ""}, JOB, "set CONDUCTOR_ECS_TASK_DEFINITION or agent_image"),
        ({"ecs_cluster": "nope"}, JOB, "CONDUCTOR_ECS_CLUSTER"),
        ({"ecs_container_name": "sidecar"}, JOB, "CONDUCTOR_ECS_CONTAINER_NAME"),
    ],
)
async def test_misconfiguration_fails_the_launch_for_good_with_the_setting_to_fix(
    fargate_settings, update, job, names
):
    launcher = build_launcher(fargate_settings.model_copy(update=update))
    with pytest.raises(ApplicationError) as raised:
        await ActivityEnvironment().run(launcher.launch_agent, job)
    assert raised.value.non_retryable and names in str(raised.value)
    assert agent_tasks(fargate_settings) == []
