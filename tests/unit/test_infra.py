"""The CDK app (infra/) synthesizes offline and deploys what the conductor needs, with least privilege.

One synthesis per module (3-6 s on 2 cores; jsii runs the CDK in node), read through plain dicts so a
failure shows pytest's diff (assertions.Template's own matchers raise RuntimeError).
"""

import json
import re
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk import assertions

from activities.launch_fargate import AGENT_COMMAND
from conductor_worker.config import Settings
from infra.conductor_infra.network import conductor_vpc
from infra.conductor_infra.parameters import Parameters
from infra.conductor_infra.stack import ConductorStack

ROOT = Path(__file__).parents[2]
AGENT_IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/conductor-agent:2026-05"
CONTEXT = {
    "agentImage": AGENT_IMAGE,
    "conductorImage": "ghcr.io/acme/agent-conductor:1.0",
    "temporalAddress": "temporal.internal:7233",
}
# What the conductor needs to run agents on Fargate and take work from SQS (conductor_worker/config.py).
DEPLOYED_SETTINGS = {
    "CONDUCTOR_TEMPORAL_ADDRESS",
    "CONDUCTOR_SQS_QUEUE_URL",
    "CONDUCTOR_SQS_DLQ_URL",
    "CONDUCTOR_LAUNCHER",
    "CONDUCTOR_ECS_CLUSTER",
    "CONDUCTOR_ECS_TASK_DEFINITION",
    "CONDUCTOR_ECS_SUBNETS",
    "CONDUCTOR_ECS_SECURITY_GROUPS",
    "CONDUCTOR_LOG_STORE",
    "CONDUCTOR_LOGS_S3_BUCKET",
    "CONDUCTOR_GATEWAY_PUBLIC_ADDRESS",
    "CONDUCTOR_STATE_DIR",
}


@pytest.fixture(scope="module")
def template() -> dict:
    # cdk.json's feature flags, so this is the template `cdk synth` prints.
    flags = json.loads((ROOT / "infra" / "cdk.json").read_text())["context"]
    app = cdk.App(context={**flags, **CONTEXT})
    stack = ConductorStack(app, "AgentConductor", parameters=Parameters.from_context(app.node))
    return assertions.Template.from_stack(stack).to_json()


def resources(template: dict, type_: str) -> dict[str, dict]:
    return {k: r.get("Properties", {}) for k, r in template["Resources"].items() if r["Type"] == type_}


def only(template: dict, type_: str, where=lambda props: True) -> tuple[str, dict]:
    found = [(k, p) for k, p in resources(template, type_).items() if where(p)]
    assert len(found) == 1, f"expected one {type_}, found {[k for k, _ in found]}"
    return found[0]


def ref(logical_id: str) -> dict:
    return {"Ref": logical_id}


def arn_of(logical_id: str) -> dict:
    return {"Fn::GetAtt": [logical_id, "Arn"]}


def queues(template: dict) -> tuple[str, str]:
    intake, _ = only(template, "AWS::SQS::Queue", lambda p: "RedrivePolicy" in p)
    dlq, _ = only(template, "AWS::SQS::Queue", lambda p: "RedrivePolicy" not in p)
    return intake, dlq


def agent_task(template: dict) -> dict:
    return only(
        template, "AWS::ECS::TaskDefinition", lambda p: p["ContainerDefinitions"][0]["Name"] == "agent"
    )[1]


def conductor_container(template: dict) -> dict:
    task = only(
        template, "AWS::ECS::TaskDefinition", lambda p: p["ContainerDefinitions"][0]["Name"] == "conductor"
    )
    return task[1]["ContainerDefinitions"][0]


def conductor_env(template: dict) -> dict[str, object]:
    return {e["Name"]: e["Value"] for e in conductor_container(template)["Environment"]}


def policy_statements(template: dict, role: dict) -> list[dict]:
    """Every statement of the inline policies attached to one role (given as its Fn::GetAtt)."""
    role_ref = ref(role["Fn::GetAtt"][0])
    return [
        statement
        for policy in resources(template, "AWS::IAM::Policy").values()
        if role_ref in policy["Roles"]
        for statement in policy["PolicyDocument"]["Statement"]
    ]


def actions(statement: dict) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else action


def statements_for(statements: list[dict], action: str) -> list[dict]:
    return [s for s in statements if action in actions(s)]


def test_the_intake_queue_redrives_to_the_dlq_and_hides_messages_as_long_as_the_conductor(template):
    intake, dlq = queues(template)
    props = resources(template, "AWS::SQS::Queue")[intake]
    assert props["RedrivePolicy"] == {"deadLetterTargetArn": arn_of(dlq), "maxReceiveCount": 5}
    assert props["VisibilityTimeout"] == Settings.model_fields["sqs_visibility_timeout_seconds"].default
    assert conductor_env(template)["CONDUCTOR_SQS_VISIBILITY_TIMEOUT_SECONDS"] == str(
        props["VisibilityTimeout"]
    )


def test_alarm_state_changes_go_to_the_intake_queue(template):
    intake, _ = queues(template)
    _, rule = only(template, "AWS::Events::Rule")
    assert rule["EventPattern"] == {
        "source": ["aws.cloudwatch"],
        "detail-type": ["CloudWatch Alarm State Change"],
        "detail": {"state": {"value": ["ALARM", "OK", "INSUFFICIENT_DATA"]}},
    }
    # No InputTransformer: the queue receives the whole event, the shape contracts/alarms.py parses.
    assert [{k: v for k, v in t.items() if k != "Id"} for t in rule["Targets"]] == [{"Arn": arn_of(intake)}]
    _, policy = only(template, "AWS::SQS::QueuePolicy", lambda p: ref(intake) in p["Queues"])
    [allow] = [s for s in policy["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"]
    assert allow["Principal"] == {"Service": "events.amazonaws.com"}
    assert set(actions(allow)) == {"sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"}


def test_the_agent_task_holds_no_secrets_and_its_role_no_permissions(template):
    task = agent_task(template)
    [container] = task["ContainerDefinitions"]
    assert "Secrets" not in container and "Environment" not in container
    assert container["Command"] == AGENT_COMMAND
    assert policy_statements(template, task["TaskRoleArn"]) == []
    role = template["Resources"][task["TaskRoleArn"]["Fn::GetAtt"][0]]["Properties"]
    assert "ManagedPolicyArns" not in role and "Policies" not in role
    # ECS's execution role pulls this one image and writes the container log; nothing else.
    execution = policy_statements(template, task["ExecutionRoleArn"])
    assert sorted(a for s in execution for a in actions(s)) == [
        "ecr:BatchCheckLayerAvailability",
        "ecr:BatchGetImage",
        "ecr:GetAuthorizationToken",
        "ecr:GetDownloadUrlForLayer",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
    ]
    [pull] = statements_for(execution, "ecr:BatchGetImage")
    assert pull["Resource"] == "arn:aws:ecr:eu-west-1:123456789012:repository/conductor-agent"


def test_nothing_of_the_conductor_is_reachable_from_the_agents_task(template):
    """The Fargate counterpart of the local sandbox: no role, no state, no secret the agent can get at."""
    agent = agent_task(template)
    conductor = only(template, "AWS::ECS::TaskDefinition", lambda p: "Volumes" in p)[1]
    agent_roles = {agent["TaskRoleArn"]["Fn::GetAtt"][0], agent["ExecutionRoleArn"]["Fn::GetAtt"][0]}
    conductor_roles = {
        conductor["TaskRoleArn"]["Fn::GetAtt"][0],
        conductor["ExecutionRoleArn"]["Fn::GetAtt"][0],
    }
    assert not agent_roles & conductor_roles
    # Its own task, network interface and credentials endpoint: awsvpc on Fargate, no shared volume.
    assert agent["NetworkMode"] == "awsvpc" and agent["RequiresCompatibilities"] == ["FARGATE"]
    assert "Volumes" not in agent and "MountPoints" not in agent["ContainerDefinitions"][0]
    # The conductor's roles trust only the ECS tasks service, never another role (the agent's).
    roles = resources(template, "AWS::IAM::Role")
    for name in conductor_roles:
        [trust] = roles[name]["AssumeRolePolicyDocument"]["Statement"]
        assert trust["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}, name
    # No policy in the stack lets anyone assume a role; only the conductor may pass the agent's roles.
    for policy in resources(template, "AWS::IAM::Policy").values():
        for statement in policy["PolicyDocument"]["Statement"]:
            assert not {"sts:AssumeRole", "sts:*", "*"} & set(actions(statement)), statement
    # The state directory (token secret, jobs) is on EFS, whose NFS port only the conductor reaches.
    efs_sources = [
        props["SourceSecurityGroupId"]
        for props in resources(template, "AWS::EC2::SecurityGroupIngress").values()
        if props["FromPort"] == 2049
    ]
    conductor_sg, _ = only(template, "AWS::EC2::SecurityGroup", lambda p: "gateway" in p["GroupDescription"])
    assert efs_sources == [{"Fn::GetAtt": [conductor_sg, "GroupId"]}]
    # The secrets reach the conductor's container alone.
    secrets = resources(template, "AWS::SecretsManager::Secret")
    assert secrets and "Secrets" not in agent["ContainerDefinitions"][0]
    for name in secrets:
        assert name not in json.dumps(agent)


def test_the_conductors_environment_names_real_settings(template):
    container = conductor_container(template)
    names = set(conductor_env(template)) | {s["Name"] for s in container["Secrets"]}
    unknown = sorted(n for n in names if n.removeprefix("CONDUCTOR_").lower() not in Settings.model_fields)
    assert unknown == []
    assert DEPLOYED_SETTINGS <= names
    assert {s["Name"] for s in container["Secrets"]} == {"CONDUCTOR_GITHUB_TOKEN", "CONDUCTOR_TOKEN_SECRET"}
    # The literal values parse as the settings they name (tokens resolve at deploy time).
    literal = {
        name.removeprefix("CONDUCTOR_").lower(): value
        for name, value in conductor_env(template).items()
        if isinstance(value, str)
    }
    settings = Settings(**literal)
    assert (settings.launcher, settings.log_store, settings.temporal_address) == (
        "fargate",
        "s3",
        "temporal.internal:7233",
    )


def test_the_conductor_is_pointed_at_the_stacks_own_resources(template):
    env = conductor_env(template)
    intake, dlq = queues(template)
    cluster, _ = only(template, "AWS::ECS::Cluster")
    bucket, _ = only(template, "AWS::S3::Bucket")
    agent_sg, _ = only(
        template, "AWS::EC2::SecurityGroup", lambda p: "per-job agents" in p["GroupDescription"]
    )
    task = agent_task(template)
    assert (env["CONDUCTOR_SQS_QUEUE_URL"], env["CONDUCTOR_SQS_DLQ_URL"]) == (ref(intake), ref(dlq))
    assert env["CONDUCTOR_ECS_CLUSTER"] == ref(cluster)
    assert env["CONDUCTOR_LOGS_S3_BUCKET"] == ref(bucket)
    assert env["CONDUCTOR_ECS_TASK_DEFINITION"] == task["Family"]
    assert env["CONDUCTOR_ECS_CONTAINER_NAME"] == task["ContainerDefinitions"][0]["Name"]
    assert env["CONDUCTOR_ECS_SECURITY_GROUPS"] == {"Fn::GetAtt": [agent_sg, "GroupId"]}
    private_subnets = [ref(k) for k in resources(template, "AWS::EC2::Subnet") if "Private" in k]
    assert env["CONDUCTOR_ECS_SUBNETS"] == {"Fn::Join": [",", private_subnets]}


def test_agents_reach_the_gateway_by_its_service_name_and_nobody_else_can(template):
    env = conductor_env(template)
    _, namespace = only(template, "AWS::ServiceDiscovery::PrivateDnsNamespace")
    _, discovery = only(template, "AWS::ServiceDiscovery::Service")
    port = env["CONDUCTOR_GATEWAY_LISTEN"].rsplit(":", 1)[1]
    assert env["CONDUCTOR_GATEWAY_PUBLIC_ADDRESS"] == f"{discovery['Name']}.{namespace['Name']}:{port}"
    agent_sg, _ = only(
        template, "AWS::EC2::SecurityGroup", lambda p: "per-job agents" in p["GroupDescription"]
    )
    conductor_sg, _ = only(
        template, "AWS::EC2::SecurityGroup", lambda p: "gRPC gateway" in p["GroupDescription"]
    )
    ingress = [
        (r["SourceSecurityGroupId"], r["FromPort"], r["ToPort"])
        for r in resources(template, "AWS::EC2::SecurityGroupIngress").values()
        if r["GroupId"] == {"Fn::GetAtt": [conductor_sg, "GroupId"]}
    ]
    assert ingress == [({"Fn::GetAtt": [agent_sg, "GroupId"]}, int(port), int(port))]


def test_the_conductor_may_stop_only_after_its_drain(template):
    container = conductor_container(template)
    drain = float(conductor_env(template)["CONDUCTOR_DRAIN_TIMEOUT_SECONDS"])
    assert drain == Settings.model_fields["drain_timeout_seconds"].default
    # The drain also stops the gateway and the REST API after the activities: a minute to spare.
    assert container["StopTimeout"] >= drain + 60


def test_the_state_dir_is_on_efs_shared_by_every_conductor_task(template):
    container = conductor_container(template)
    [mount] = container["MountPoints"]
    assert mount["ContainerPath"] == conductor_env(template)["CONDUCTOR_STATE_DIR"]
    _, task = only(template, "AWS::ECS::TaskDefinition", lambda p: "Volumes" in p)
    [volume] = task["Volumes"]
    assert volume["Name"] == mount["SourceVolume"]
    assert volume["EFSVolumeConfiguration"]["TransitEncryption"] == "ENABLED"
    _, access_point = only(template, "AWS::EFS::AccessPoint")
    # The Dockerfile's user owns the files, whatever user the image runs as.
    uid = re.search(r"--uid (\d+)", (ROOT / "Dockerfile").read_text())[1]
    assert access_point["PosixUser"]["Uid"] == uid


def test_the_conductors_role_grants_exactly_what_it_calls(template):
    container_task = only(template, "AWS::ECS::TaskDefinition", lambda p: "Volumes" in p)[1]
    statements = policy_statements(template, container_task["TaskRoleArn"])
    agent = agent_task(template)
    intake, dlq = queues(template)
    bucket, _ = only(template, "AWS::S3::Bucket")

    [run_task] = statements_for(statements, "ecs:RunTask")
    assert actions(run_task) == ["ecs:RunTask"]
    # Any revision of the agent's family (a draining conductor may run the previous one), nothing else.
    assert run_task["Resource"]["Fn::Join"][1][-1] == f":task-definition/{agent['Family']}:*"
    [pass_role] = statements_for(statements, "iam:PassRole")
    assert sorted(pass_role["Resource"], key=str) == sorted(
        [agent["TaskRoleArn"], agent["ExecutionRoleArn"]], key=str
    )
    assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}

    assert [s["Resource"] for s in statements_for(statements, "sqs:ReceiveMessage")] == [arn_of(intake)]
    assert [s["Resource"] for s in statements_for(statements, "sqs:DeleteMessage")] == [arn_of(intake)]
    assert [s["Resource"] for s in statements_for(statements, "sqs:SendMessage")] == [arn_of(dlq)]
    [write] = statements_for(statements, "s3:PutObject")
    assert write["Resource"] == {"Fn::Join": ["", [arn_of(bucket), "/logs/*"]]}

    # Every ECS call the Fargate launcher makes is granted (RunTask carries tags, hence TagResource).
    launcher = (ROOT / "activities" / "launch_fargate.py").read_text()
    called = {"ecs:" + name.title().replace("_", "") for name in re.findall(r"_ecs\.(\w+)", launcher)}
    granted = {a for s in statements for a in actions(s)}
    assert called | {"ecs:TagResource"} <= granted
    # A wildcard resource only where the API has no resource-level permissions or a condition scopes it.
    unscoped = {a for s in statements if s["Resource"] == "*" and "Condition" not in s for a in actions(s)}
    assert unscoped == {"ecs:DescribeTaskDefinition"}
    assert not any(a.endswith("*") for a in granted)


def test_the_conductor_image_from_another_registry_gets_no_ecr_rights(template):
    task = only(template, "AWS::ECS::TaskDefinition", lambda p: "Volumes" in p)[1]
    assert task["ContainerDefinitions"][0]["Image"] == CONTEXT["conductorImage"]
    granted = {a for s in policy_statements(template, task["ExecutionRoleArn"]) for a in actions(s)}
    assert not any(a.startswith("ecr:") for a in granted)


def test_a_missing_image_or_address_names_the_context_flag():
    app = cdk.App(context={"agentImage": AGENT_IMAGE})
    with pytest.raises(ValueError, match=r"-c conductorImage=<.*-c temporalAddress=<"):
        Parameters.from_context(app.node)


def test_a_vpc_id_from_context_is_looked_up_not_created():
    app = cdk.App()
    stack = cdk.Stack(app, "Lookup", env=cdk.Environment(account="123456789012", region="eu-west-1"))
    conductor_vpc(stack, "vpc-0abc")
    assert not any(isinstance(c, cdk.aws_ec2.CfnVPC) for c in stack.node.find_all())
    # Outside the CLI the lookup is only recorded; `cdk synth` answers it and caches cdk.context.json.
    manifest = json.loads((Path(app.synth().directory) / "manifest.json").read_text())
    [missing] = manifest["missing"]
    assert (missing["provider"], missing["props"]["filter"]) == ("vpc-provider", {"vpc-id": "vpc-0abc"})
