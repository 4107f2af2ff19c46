"""The conductor as a Fargate service: its settings, secrets, gateway address and IAM.

Its role may do exactly what the conductor does in AWS: take messages off the intake queue, dead-letter
poison ones, run and stop agent tasks of the agent's task definition family (and pass that task's two
roles), and read and write its logs and blobs under their prefixes of the bucket. Each task's state dir
is its own (the task's ephemeral storage): tasks share only Temporal and the bucket (README "Replicas").
"""

from aws_cdk import (
    Aws,
    Duration,
    Fn,
    RemovalPolicy,
    Stack,
    aws_ec2,
    aws_ecs,
    aws_iam,
    aws_logs,
    aws_secretsmanager,
    aws_servicediscovery,
)
from constructs import Construct

from .agent import CONTAINER_NAME as AGENT_CONTAINER_NAME
from .agent import AgentTask
from .images import container_image
from .intake import VISIBILITY_TIMEOUT, Intake
from .network import PRIVATE
from .parameters import Parameters
from .storage import BLOBS_PREFIX, JOB_BLOBS_PREFIX, LOGS_PREFIX, Storage

GATEWAY_PORT = 50051
# On the task's ephemeral storage (Fargate's default 20 GiB, which also holds the publisher's scratch
# clones); the Dockerfile makes it and gives it to the user the conductor runs as.
STATE_DIR = "/var/lib/conductor"
# Baked into the conductor image by the operator (infra/README.md), as docker compose mounts it.
ROUTES_FILE = "/etc/conductor/routes.yaml"
# README "Deploying safely": SIGTERM starts a drain that gives in-flight activities this long, then stops
# the gateway and the REST API. ECS kills the container STOP_TIMEOUT after SIGTERM; 120 s is Fargate's
# maximum and leaves the drain 90 s to spare.
DRAIN_TIMEOUT_SECONDS = 30
STOP_TIMEOUT = Duration.seconds(120)


class ConductorService(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        parameters: Parameters,
        cluster: aws_ecs.Cluster,
        intake: Intake,
        storage: Storage,
        agent: AgentTask,
    ) -> None:
        super().__init__(scope, id)
        # Shared by every conductor task, so each accepts the tokens of agents another one launched.
        token_secret = aws_secretsmanager.Secret(
            self,
            "TokenSecret",
            description="HMAC key for the conductor's per-job agent tokens",
            generate_secret_string=aws_secretsmanager.SecretStringGenerator(
                exclude_punctuation=True, password_length=64
            ),
        )
        # Created with a random placeholder; the operator puts the real token in (infra/README.md).
        # Kept when the stack goes, so a redeploy does not lose it.
        self.github_token = aws_secretsmanager.Secret(
            self,
            "GithubToken",
            description="GitHub token the conductor publishes branches and pull requests with",
            removal_policy=RemovalPolicy.RETAIN,
        )

        task_definition = aws_ecs.FargateTaskDefinition(
            self, "TaskDefinition", cpu=512, memory_limit_mib=1024
        )
        gateway = f"gateway.{cluster.default_cloud_map_namespace.namespace_name}:{GATEWAY_PORT}"
        task_definition.add_container(
            "conductor",
            image=container_image(self, "Image", parameters.conductor_image),
            environment=self._environment(parameters, cluster, intake, storage, agent, gateway),
            secrets={
                "CONDUCTOR_TOKEN_SECRET": aws_ecs.Secret.from_secrets_manager(token_secret),
                "CONDUCTOR_GITHUB_TOKEN": aws_ecs.Secret.from_secrets_manager(self.github_token),
            },
            stop_timeout=STOP_TIMEOUT,
            port_mappings=[aws_ecs.PortMapping(container_port=GATEWAY_PORT, name="gateway")],
            logging=aws_ecs.LogDrivers.aws_logs(
                stream_prefix="conductor",
                log_group=aws_logs.LogGroup(
                    self,
                    "Logs",
                    retention=aws_logs.RetentionDays.THREE_MONTHS,
                    removal_policy=RemovalPolicy.DESTROY,
                ),
            ),
        )

        security_group = aws_ec2.SecurityGroup(
            self, "SecurityGroup", vpc=cluster.vpc, description="agent conductor: gRPC gateway for agents"
        )
        security_group.add_ingress_rule(
            agent.security_group, aws_ec2.Port.tcp(GATEWAY_PORT), "agents dial the gateway"
        )
        # `conductorTasks` replicas (1 by default): any of them serves any call of any job, since they share
        # Temporal and the bucket (README "Replicas"). New tasks start before old ones drain (200 %), and a
        # conductor that cannot start rolls back.
        self.service = aws_ecs.FargateService(
            self,
            "Service",
            cluster=cluster,
            task_definition=task_definition,
            desired_count=parameters.conductor_tasks,
            min_healthy_percent=100,
            max_healthy_percent=200,
            circuit_breaker=aws_ecs.DeploymentCircuitBreaker(rollback=True),
            security_groups=[security_group],
            vpc_subnets=PRIVATE,
            # The gateway's DNS name (CONDUCTOR_GATEWAY_PUBLIC_ADDRESS): a multivalue A record per running
            # conductor task, which ECS registers as a task starts and removes as it stops. The agent's
            # channel balances round robin over every address it resolves (agent_runtime/connection.py);
            # a short TTL lets agents find new tasks soon after a deploy.
            cloud_map_options=aws_ecs.CloudMapOptions(
                name="gateway",
                dns_record_type=aws_servicediscovery.DnsRecordType.A,
                dns_ttl=Duration.seconds(10),
            ),
        )
        for statement in _conductor_statements(cluster, intake, storage, agent):
            task_definition.add_to_task_role_policy(statement)
        self.gateway_address = gateway

    @staticmethod
    def _environment(
        parameters: Parameters,
        cluster: aws_ecs.Cluster,
        intake: Intake,
        storage: Storage,
        agent: AgentTask,
        gateway: str,
    ) -> dict[str, str]:
        """CONDUCTOR_* settings (conductor_worker/config.py); tests/unit/test_infra.py checks each name."""
        agent_subnets = cluster.vpc.select_subnets(subnet_type=PRIVATE.subnet_type).subnet_ids
        return {
            "CONDUCTOR_TEMPORAL_ADDRESS": parameters.temporal_address,
            "CONDUCTOR_TEMPORAL_NAMESPACE": parameters.temporal_namespace,
            "CONDUCTOR_STATE_DIR": STATE_DIR,
            "CONDUCTOR_ROUTES_FILE": ROUTES_FILE,
            "CONDUCTOR_DRAIN_TIMEOUT_SECONDS": str(DRAIN_TIMEOUT_SECONDS),
            "CONDUCTOR_GATEWAY_LISTEN": f"0.0.0.0:{GATEWAY_PORT}",
            "CONDUCTOR_GATEWAY_PUBLIC_ADDRESS": gateway,
            "CONDUCTOR_AWS_REGION": Aws.REGION,
            "CONDUCTOR_SQS_QUEUE_URL": intake.queue.queue_url,
            "CONDUCTOR_SQS_DLQ_URL": intake.dead_letters.queue_url,
            "CONDUCTOR_SQS_VISIBILITY_TIMEOUT_SECONDS": str(int(VISIBILITY_TIMEOUT.to_seconds())),
            "CONDUCTOR_LAUNCHER": "fargate",
            "CONDUCTOR_ECS_CLUSTER": cluster.cluster_name,
            # The family, not one revision: the launcher runs the latest, so a conductor still draining
            # after a deploy launches the new agent too.
            "CONDUCTOR_ECS_TASK_DEFINITION": agent.task_definition.family,
            "CONDUCTOR_ECS_CONTAINER_NAME": AGENT_CONTAINER_NAME,
            "CONDUCTOR_ECS_SUBNETS": Fn.join(",", agent_subnets),
            "CONDUCTOR_ECS_SECURITY_GROUPS": agent.security_group.security_group_id,
            "CONDUCTOR_ECS_ASSIGN_PUBLIC_IP": "false",
            "CONDUCTOR_LOG_STORE": "s3",
            "CONDUCTOR_LOGS_S3_BUCKET": storage.bucket.bucket_name,
            "CONDUCTOR_LOGS_S3_PREFIX": LOGS_PREFIX,
            # Agents get presigned URLs for their task files and bundle (CONDUCTOR_BLOB_URL_EXPIRY_SECONDS,
            # default 1 h, or less: a URL dies with the role session that signed it).
            "CONDUCTOR_BLOB_STORE": "s3",
            "CONDUCTOR_BLOB_S3_BUCKET": storage.bucket.bucket_name,
            "CONDUCTOR_BLOB_S3_PREFIX": BLOBS_PREFIX,
        }


def _conductor_statements(
    cluster: aws_ecs.Cluster, intake: Intake, storage: Storage, agent: AgentTask
) -> list[aws_iam.PolicyStatement]:
    """The calls conductor_worker/intake/sqs.py, conductor_worker/gateway/s3_log_store.py, stores/blob_store.py and
    activities/launch_fargate.py make (the agents' presigned GET and POST act with this role, each on its one
    key)."""
    stack = Stack.of(cluster)
    agent_family = stack.format_arn(
        service="ecs", resource="task-definition", resource_name=f"{agent.task_definition.family}:*"
    )
    cluster_tasks = stack.format_arn(
        service="ecs", resource="task", resource_name=f"{cluster.cluster_name}/*"
    )
    in_cluster = {"ArnEquals": {"ecs:cluster": cluster.cluster_arn}}
    agent_roles = [
        agent.task_definition.task_role.role_arn,
        agent.task_definition.obtain_execution_role().role_arn,
    ]
    return [
        aws_iam.PolicyStatement(
            actions=["sqs:ReceiveMessage", "sqs:DeleteMessage"], resources=[intake.queue.queue_arn]
        ),
        aws_iam.PolicyStatement(actions=["sqs:SendMessage"], resources=[intake.dead_letters.queue_arn]),
        aws_iam.PolicyStatement(actions=["ecs:RunTask"], resources=[agent_family], conditions=in_cluster),
        # RunTask sends tags (job id, attempt); tagging is allowed only as part of RunTask.
        aws_iam.PolicyStatement(
            actions=["ecs:TagResource"],
            resources=[cluster_tasks],
            conditions={"StringEquals": {"ecs:CreateAction": "RunTask"}},
        ),
        aws_iam.PolicyStatement(actions=["ecs:DescribeTasks", "ecs:StopTask"], resources=[cluster_tasks]),
        # ListTasks (the launcher's lookup by startedBy) names no task; the cluster condition scopes it.
        aws_iam.PolicyStatement(actions=["ecs:ListTasks"], resources=["*"], conditions=in_cluster),
        # DescribeTaskDefinition has no resource-level permissions.
        aws_iam.PolicyStatement(actions=["ecs:DescribeTaskDefinition"], resources=["*"]),
        aws_iam.PolicyStatement(
            actions=["iam:PassRole"],
            resources=agent_roles,
            conditions={"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
        ),
        # S3 answers a missing key with 404 (NoSuchKey) only to a caller allowed ListBucket on the bucket,
        # 403 otherwise; the stores read 404 as "not there" (a superseded attempt, a description to
        # upload) and 403 as an error. A HEAD or GET names no s3:prefix, so a ListBucket limited by one
        # would not count: it is granted on the whole bucket, which holds only the conductor's data.
        aws_iam.PolicyStatement(actions=["s3:ListBucket"], resources=[storage.bucket.bucket_arn]),
        aws_iam.PolicyStatement(
            actions=["s3:GetObject", "s3:PutObject"],
            resources=[
                storage.bucket.arn_for_objects(f"{LOGS_PREFIX}*"),
                storage.bucket.arn_for_objects(f"{BLOBS_PREFIX}*"),
            ],
        ),
        # Deletes and multipart aborts only of job blobs: a bundle whose stored size is not the announced
        # one (conductor_worker/gateway/server.py), an upload through the gateway that failed half-way.
        aws_iam.PolicyStatement(
            actions=["s3:DeleteObject", "s3:AbortMultipartUpload"],
            resources=[storage.bucket.arn_for_objects(f"{JOB_BLOBS_PREFIX}*")],
        ),
    ]
