"""The VPC: an existing one from context (`-c vpcId=vpc-…`), or a small one of the stack's own."""

from aws_cdk import aws_ec2
from constructs import Construct


def conductor_vpc(scope: Construct, vpc_id: str) -> aws_ec2.IVpc:
    if vpc_id:
        # A lookup needs the stack's account and region (app.py takes them from the CLI's credentials);
        # the answer is cached in cdk.context.json.
        return aws_ec2.Vpc.from_lookup(scope, "Vpc", vpc_id=vpc_id)
    # Two AZs so the service survives one; one NAT gateway, because the agents and the conductor live in
    # private subnets and only need outbound traffic (git remotes, the model API, Temporal, AWS APIs).
    return aws_ec2.Vpc(scope, "Vpc", max_azs=2, nat_gateways=1)
