"""The per-job agent's Fargate task definition and security group.

The agent holds no GitHub, Temporal or AWS credentials: the task definition has no secrets and its task
role no policies (it moves its task files and bundle with presigned URLs, each for one key). The
execution role (ECS's, not the agent's) may only pull the image and write the container log. Everything
job-specific (gateway address, per-job token) arrives as RunTask overrides from the conductor's Fargate
launcher.
"""

from aws_cdk import RemovalPolicy, aws_ec2, aws_ecs, aws_logs
from constructs import Construct

from .images import container_image

CONTAINER_NAME = "agent"
# The launcher sends the same command as an override; here it documents what the container is for.
COMMAND = ["conductor-agent", "run"]


class AgentTask(Construct):
    def __init__(self, scope: Construct, id: str, *, vpc: aws_ec2.IVpc, image_uri: str, family: str) -> None:
        super().__init__(scope, id)
        # The coding agent, git and the job's own steps (tests, linters) run here: room for a build.
        self.task_definition = aws_ecs.FargateTaskDefinition(
            self, "TaskDefinition", family=family, cpu=1024, memory_limit_mib=4096
        )
        self.task_definition.add_container(
            CONTAINER_NAME,
            image=container_image(self, "Image", image_uri),
            command=COMMAND,
            logging=aws_ecs.LogDrivers.aws_logs(
                stream_prefix="agent",
                log_group=aws_logs.LogGroup(
                    self,
                    "Logs",
                    retention=aws_logs.RetentionDays.ONE_MONTH,
                    removal_policy=RemovalPolicy.DESTROY,
                ),
            ),
        )
        # Outbound only, to anywhere: the agent dials the conductor's gateway, git remotes, the model API and
        # S3 over HTTPS (its task files and bundle, with presigned URLs the conductor signed; through the
        # VPC's S3 gateway endpoint when the stack made the VPC).
        self.security_group = aws_ec2.SecurityGroup(
            self, "SecurityGroup", vpc=vpc, description="per-job agents: outbound only"
        )
