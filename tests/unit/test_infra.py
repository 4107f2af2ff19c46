"""The CDK app (infra/) synthesizes offline and deploys what the conductor needs, with least privilege.

One synthesis per module (3-6 s on 2 cores; jsii runs the CDK in node), read through plain dicts so a
failure shows pytest's diff (assertions.Template's own matchers raise RuntimeError).
"""

import hashlib
import json
import re
from importlib.metadata import version
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk import assertions

from activities.launch_fargate import AGENT_COMMAND
from conductor_worker.config import Settings
from contracts.policies import JobPolicy
from infra.conductor_infra.network import conductor_vpc
from infra.conductor_infra.parameters import Parameters
from infra.conductor_infra.stack import ConductorStack
from stores.attempts import attempt_prefix

ROOT = Path(__file__).parents[2]
AGENT_IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/conductor-agent:2026-05"
CONTEXT = {
    "agentImage": AGENT_IMAGE,
    "conductorImage": "ghcr.io/acme/agent-conductor:1.0",
    "temporalAddress": "temporal.internal:7233",
    # Several replicas, the case the gateway address and the shared bucket are for.
    "conductorTasks": "2",
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
    "CONDUCTOR_BLOB_STORE",
    "CONDUCTOR_BLOB_S3_BUCKET",
    "CONDUCTOR_GATEWAY_PUBLIC_ADDRESS",
    "CONDUCTOR_STATE_DIR",
}


@pytest.fixture(scope="module")
def template(request) -> dict:
    """The synthesized template, kept in pytest's cache under a hash of everything it is made from: a
    synth is 6-11 s of the fast lane (jsii starts node), and the template is a pure function of infra/'s
    sources, the CDK's version and the context. A clean clone (CI) has no cache and synthesizes."""
    key = f"conductor/infra-template/{_template_inputs_digest()}"
    cache = getattr(request.config, "cache", None)  # None with `-p no:cacheprovider`
    if cache is not None and (cached := cache.get(key, None)) is not None:
        return cached
    # cdk.json's feature flags, so this is the template `cdk synth` prints.
    flags = json.loads((ROOT / "infra" / "cdk.json").read_text())["context"]
    app = cdk.App(context={**flags, **CONTEXT})
    stack = ConductorStack(app, "AgentConductor", parameters=Parameters.from_context(app.node))
    synthesized = assertions.Template.from_stack(stack).to_json()
    if cache is not None:
        cache.set(key, synthesized)
    return synthesized


def _template_inputs_digest() -> str:
    digest = hashlib.sha256(json.dumps([version("aws-cdk-lib"), version("constructs"), CONTEXT]).encode())
    for source in sorted((ROOT / "infra").rglob("*")):
        if source.suffix in (".py", ".json") and "__pycache__" not in source.parts:
            digest.update(str(source.relative_to(ROOT)).encode() + b"\0" + source.read_bytes())
    return digest.hexdigest()[:32]


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


def conductor_task(template: dict) -> dict:
    return only(
        template, "AWS::ECS::TaskDefinition", lambda p: p["ContainerDefinitions"][0]["Name"] == "conductor"
    )[1]


def conductor_container(template: dict) -> dict:
    return conductor_task(template)["ContainerDefinitions"][0]


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
    conductor = conductor_task(template)
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
    # The bucket grants nobody anything itself: only the conductor's role reaches it, and an agent only with
    # a presigned URL the conductor signed for one key.
    _, bucket_policy = only(template, "AWS::S3::BucketPolicy")
    assert [st["Effect"] for st in bucket_policy["PolicyDocument"]["Statement"]] == ["Deny"]
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
    assert (settings.launcher, settings.log_store, settings.blob_store, settings.temporal_address) == (
        "fargate",
        "s3",
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
    # One bucket for both stores, under prefixes of their own (infra/conductor_infra/storage.py says why).
    assert env["CONDUCTOR_LOGS_S3_BUCKET"] == env["CONDUCTOR_BLOB_S3_BUCKET"] == ref(bucket)
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
    # One name for every replica: an A record per running task, all of them in each answer (multivalue),
    # which the agent's round-robin channel spreads its calls over.
    _, service = only(template, "AWS::ECS::Service")
    assert service["DesiredCount"] == int(CONTEXT["conductorTasks"]) > 1
    assert service["ServiceRegistries"] == [
        {"RegistryArn": arn_of(only(template, "AWS::ServiceDiscovery::Service")[0])}
    ]
    assert discovery["DnsConfig"]["RoutingPolicy"] == "MULTIVALUE"
    assert discovery["DnsConfig"]["DnsRecords"] == [{"TTL": 10, "Type": "A"}]
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


def test_each_conductor_task_keeps_its_state_dir_on_its_own_storage(template):
    """Replicas share only Temporal and the bucket (README "Replicas"): no file system, no volume."""
    assert not [r for r in template["Resources"].values() if r["Type"].startswith("AWS::EFS::")]
    task = conductor_task(template)
    assert "Volumes" not in task and "MountPoints" not in task["ContainerDefinitions"][0]
    granted = {
        a
        for p in resources(template, "AWS::IAM::Policy").values()
        for s in p["PolicyDocument"]["Statement"]
        for a in actions(s)
    }
    assert not [a for a in granted if a.startswith("elasticfilesystem:")]
    assert not [
        r for r in resources(template, "AWS::EC2::SecurityGroupIngress").values() if r["FromPort"] == 2049
    ]
    # The image's state dir is writable by the user it runs as (nothing mounts one over it on Fargate).
    state_dir = conductor_env(template)["CONDUCTOR_STATE_DIR"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    user = re.findall(r"^USER (\S+)", dockerfile, re.M)[-1]
    assert f"mkdir -p {state_dir}" in dockerfile
    assert f"chown {user}:{user} {state_dir}" in dockerfile


def test_the_bucket_is_private_tls_only_and_expires_job_blobs_only(template):
    _, bucket = only(template, "AWS::S3::Bucket")
    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    [rule] = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    _, policy = only(template, "AWS::S3::BucketPolicy")
    [deny] = policy["PolicyDocument"]["Statement"]
    assert (deny["Effect"], deny["Action"], deny["Condition"]) == (
        "Deny",
        "s3:*",
        {"Bool": {"aws:SecureTransport": "false"}},
    )

    env = conductor_env(template)
    logs, blobs = env["CONDUCTOR_LOGS_S3_PREFIX"], env["CONDUCTOR_BLOB_S3_PREFIX"]
    assert not logs.startswith(blobs) and not blobs.startswith(logs)
    rules = {r["Id"]: r for r in bucket["LifecycleConfiguration"]["Rules"]}
    expire = rules.pop("expire-job-blobs")
    # Exactly the blob store's job keys (stores/attempts.py): not logs, not ticket descriptions.
    assert expire["Prefix"] == blobs + attempt_prefix("ENG-1", 1).split("/")[0] + "/"
    assert expire["Status"] == "Enabled"
    # Long after an attempt's token expired and a `retry` could still come (that stages new keys anyway).
    days = expire["ExpirationInDays"]
    assert days * 86400 > 2 * max(
        Settings.model_fields["token_ttl_seconds"].default, JobPolicy().retry_window_seconds
    )
    assert days <= 30
    abort = rules.pop("abort-incomplete-uploads")
    assert abort["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1} and "Prefix" not in abort
    assert rules == {}


def test_the_conductors_role_grants_exactly_what_it_calls(template):
    container_task = conductor_task(template)
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
    assert s3_grants(statements) == s3_grants_expected(template, bucket)

    # Every ECS call the Fargate launcher makes is granted (RunTask carries tags, hence TagResource).
    launcher = (ROOT / "activities" / "launch_fargate.py").read_text()
    called = {"ecs:" + name.title().replace("_", "") for name in re.findall(r"_ecs\.(\w+)", launcher)}
    granted = {a for s in statements for a in actions(s)}
    assert called | {"ecs:TagResource"} <= granted
    # A wildcard resource only where the API has no resource-level permissions or a condition scopes it.
    unscoped = {a for s in statements if s["Resource"] == "*" and "Condition" not in s for a in actions(s)}
    assert unscoped == {"ecs:DescribeTaskDefinition"}
    assert not any(a.endswith("*") for a in granted)


def s3_grants(statements: list[dict]) -> dict[str, list]:
    """S3 action -> the resources it is granted on (sorted), from unconditioned statements only."""
    grants: dict[str, list] = {}
    for statement in statements:
        for action in actions(statement):
            if action.startswith("s3:"):
                assert "Condition" not in statement, statement
                resource = statement["Resource"]
                grants.setdefault(action, []).extend(resource if isinstance(resource, list) else [resource])
    return {action: sorted(found, key=json.dumps) for action, found in grants.items()}


def s3_grants_expected(template: dict, bucket: str) -> dict[str, list]:
    env = conductor_env(template)
    logs, blobs = env["CONDUCTOR_LOGS_S3_PREFIX"], env["CONDUCTOR_BLOB_S3_PREFIX"]
    jobs = blobs + attempt_prefix("ENG-1", 1).split("/")[0] + "/"

    def objects(*prefixes: str) -> list[dict]:
        return sorted(({"Fn::Join": ["", [arn_of(bucket), f"/{p}*"]]} for p in prefixes), key=json.dumps)

    return {
        # On the bucket, no prefix condition: S3 answers a missing key with 404 only to a caller allowed
        # ListBucket, and a HEAD or GET carries no s3:prefix (infra/README.md).
        "s3:ListBucket": [arn_of(bucket)],
        "s3:GetObject": objects(logs, blobs),
        "s3:PutObject": objects(logs, blobs),
        "s3:DeleteObject": objects(jobs),
        "s3:AbortMultipartUpload": objects(jobs),
    }


# The S3 calls of the log and blob stores, as IAM actions. A call not listed fails the test below: grant it
# (or not) on purpose. Presigned URLs are signed for the agent's GET of a task file and POST of a bundle.
S3_CALLS = {
    "put_object": "s3:PutObject",
    "upload_file": "s3:PutObject",  # multipart: Create/UploadPart/Complete are PutObject; on failure, abort
    "head_object": "s3:GetObject",
    "get_object": "s3:GetObject",
    "delete_object": "s3:DeleteObject",
    "list_objects_v2": "s3:ListBucket",
    "generate_presigned_url": "s3:GetObject",
    "generate_presigned_post": "s3:PutObject",
}


def test_every_s3_call_of_the_stores_is_granted_and_no_other(template):
    statements = policy_statements(template, conductor_task(template)["TaskRoleArn"])
    sources = [ROOT / "stores" / "blob_store.py", ROOT / "conductor_worker" / "gateway" / "s3_log_store.py"]
    calls = set()
    for source in sources:
        text = source.read_text()
        calls |= set(re.findall(r"_s3\.(\w+)\(", text)) - {"get_paginator"}
        calls |= set(re.findall(r"_s3\.get_paginator\(\"(\w+)\"\)", text))
    assert 'generate_presigned_url(\n            "get_object"' in sources[0].read_text()
    unknown = sorted(c for c in calls if c not in S3_CALLS)
    assert unknown == []
    needed = {S3_CALLS[c] for c in calls} | {"s3:AbortMultipartUpload"}
    assert set(s3_grants(statements)) == needed


def test_agents_reach_s3_in_private_subnets_through_a_gateway_endpoint(template):
    _, endpoint = only(template, "AWS::EC2::VPCEndpoint")
    assert endpoint["VpcEndpointType"] == "Gateway"
    assert endpoint["ServiceName"]["Fn::Join"][1][-1] == ".s3"
    # The route tables of the subnets the agents (and the conductor) run in.
    private_tables = [ref(k) for k in resources(template, "AWS::EC2::RouteTable") if "Private" in k]
    agent_subnets = conductor_env(template)["CONDUCTOR_ECS_SUBNETS"]["Fn::Join"][1]
    associations = resources(template, "AWS::EC2::SubnetRouteTableAssociation").values()
    assert sorted(private_tables, key=str) == sorted(
        (a["RouteTableId"] for a in associations if a["SubnetId"] in agent_subnets), key=str
    )
    assert sorted(endpoint["RouteTableIds"], key=str) == sorted(private_tables, key=str)
    # The agents' security group lets them out on HTTPS (to S3 among others); nothing in.
    _, agent_sg = only(
        template, "AWS::EC2::SecurityGroup", lambda p: "per-job agents" in p["GroupDescription"]
    )
    assert agent_sg["SecurityGroupEgress"] == [
        {"CidrIp": "0.0.0.0/0", "Description": "Allow all outbound traffic by default", "IpProtocol": "-1"}
    ]
    assert "SecurityGroupIngress" not in agent_sg


def test_the_conductor_image_from_another_registry_gets_no_ecr_rights(template):
    task = conductor_task(template)
    assert task["ContainerDefinitions"][0]["Image"] == CONTEXT["conductorImage"]
    granted = {a for s in policy_statements(template, task["ExecutionRoleArn"]) for a in actions(s)}
    assert not any(a.startswith("ecr:") for a in granted)


def test_a_missing_image_or_address_names_the_context_flag():
    app = cdk.App(context={"agentImage": AGENT_IMAGE})
    with pytest.raises(ValueError, match=r"-c conductorImage=<.*-c temporalAddress=<"):
        Parameters.from_context(app.node)


def test_one_conductor_task_unless_told_and_a_bad_count_names_the_flag():
    given = {k: v for k, v in CONTEXT.items() if k != "conductorTasks"}
    assert Parameters.from_context(cdk.App(context=given).node).conductor_tasks == 1
    for bad in ("0", "two", "-1", "21"):
        with pytest.raises(ValueError, match=rf"-c conductorTasks={bad}: a whole number from 1 to 20"):
            Parameters.from_context(cdk.App(context={**given, "conductorTasks": bad}).node)


def test_a_vpc_id_from_context_is_looked_up_not_created():
    app = cdk.App()
    stack = cdk.Stack(app, "Lookup", env=cdk.Environment(account="123456789012", region="eu-west-1"))
    conductor_vpc(stack, "vpc-0abc")
    assert not any(isinstance(c, cdk.aws_ec2.CfnVPC) for c in stack.node.find_all())
    # Outside the CLI the lookup is only recorded; `cdk synth` answers it and caches cdk.context.json.
    manifest = json.loads((Path(app.synth().directory) / "manifest.json").read_text())
    [missing] = manifest["missing"]
    assert (missing["provider"], missing["props"]["filter"]) == ("vpc-provider", {"vpc-id": "vpc-0abc"})
