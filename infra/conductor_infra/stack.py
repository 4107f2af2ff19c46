"""One stack with everything the conductor needs in an account (infra/README.md lists what and why).

One stack, not several: the service's settings and policy name the queues, bucket, cluster and agent
task definition. Across stacks each would be an export, which CloudFormation will not change while it is
imported, so replacing one of them would take two deploys.
"""

from aws_cdk import CfnOutput, Stack, aws_ecs
from constructs import Construct

from .agent import AgentTask
from .conductor_service import ConductorService
from .intake import Intake
from .network import conductor_vpc
from .parameters import Parameters
from .storage import Storage

GATEWAY_NAMESPACE = "conductor.internal"


class ConductorStack(Stack):
    def __init__(self, scope: Construct, id: str, *, parameters: Parameters, **kwargs) -> None:
        super().__init__(scope, id, **kwargs)
        vpc = conductor_vpc(self, parameters.vpc_id)
        cluster = aws_ecs.Cluster(self, "Cluster", vpc=vpc)
        cluster.add_default_cloud_map_namespace(name=GATEWAY_NAMESPACE)
        intake = Intake(self, "Intake")
        storage = Storage(self, "Storage")
        agent = AgentTask(
            self, "Agent", vpc=vpc, image_uri=parameters.agent_image, family=f"{self.stack_name}-agent"
        )
        conductor = ConductorService(
            self,
            "Conductor",
            parameters=parameters,
            cluster=cluster,
            intake=intake,
            storage=storage,
            agent=agent,
        )

        CfnOutput(self, "IntakeQueueUrl", value=intake.queue.queue_url)
        CfnOutput(self, "DeadLetterQueueUrl", value=intake.dead_letters.queue_url)
        CfnOutput(self, "ConductorBucket", value=storage.bucket.bucket_name)
        CfnOutput(self, "ClusterName", value=cluster.cluster_name)
        CfnOutput(self, "ConductorServiceName", value=conductor.service.service_name)
        CfnOutput(self, "AgentTaskDefinitionFamily", value=agent.task_definition.family)
        CfnOutput(self, "GatewayAddress", value=conductor.gateway_address)
        CfnOutput(self, "GithubTokenSecretArn", value=conductor.github_token.secret_arn)
