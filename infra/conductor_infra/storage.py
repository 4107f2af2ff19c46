"""Where the conductor keeps things outside Temporal: agent logs in S3 and its state dir on EFS.

The state dir holds the job store (task files, agents' heartbeats and results, uploaded bundles), which
every conductor process must share (README "Status"): on a Fargate task's own disk it would vanish with
the task, and the conductor that replaces it in a deploy could not finish the jobs in flight.
"""

from aws_cdk import RemovalPolicy, aws_ec2, aws_efs, aws_s3
from constructs import Construct

# The user the conductor runs as on the state file system (the Dockerfile's `conductor` user); the access
# point enforces it, so any image works.
CONDUCTOR_UID = "10001"


class Storage(Construct):
    def __init__(self, scope: Construct, id: str, *, vpc: aws_ec2.IVpc) -> None:
        super().__init__(scope, id)
        # Logs are what people read after a failed job: kept when the stack goes.
        self.logs_bucket = aws_s3.Bucket(
            self,
            "AgentLogs",
            block_public_access=aws_s3.BlockPublicAccess.BLOCK_ALL,
            encryption=aws_s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.state = aws_efs.FileSystem(
            self,
            "State",
            vpc=vpc,
            vpc_subnets=aws_ec2.SubnetSelection(subnet_type=aws_ec2.SubnetType.PRIVATE_WITH_EGRESS),
            encrypted=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.state_access_point = self.state.add_access_point(
            "Conductor",
            path="/conductor",
            create_acl=aws_efs.Acl(owner_uid=CONDUCTOR_UID, owner_gid=CONDUCTOR_UID, permissions="750"),
            posix_user=aws_efs.PosixUser(uid=CONDUCTOR_UID, gid=CONDUCTOR_UID),
        )
