"""The VPC: an existing one from context (`-c vpcId=vpc-…`), or a small one of the stack's own."""

from aws_cdk import aws_ec2
from constructs import Construct

PRIVATE = aws_ec2.SubnetSelection(subnet_type=aws_ec2.SubnetType.PRIVATE_WITH_EGRESS)


def conductor_vpc(scope: Construct, vpc_id: str) -> aws_ec2.IVpc:
    if vpc_id:
        # A lookup needs the stack's account and region (app.py takes them from the CLI's credentials);
        # the answer is cached in cdk.context.json. No S3 endpoint is added to a VPC the stack does not
        # own (it may have one already): infra/README.md says what such a VPC needs.
        return aws_ec2.Vpc.from_lookup(scope, "Vpc", vpc_id=vpc_id)
    # Two AZs so the service survives one; one NAT gateway, because the agents and the conductor live in
    # private subnets and only need outbound traffic (git remotes, the model API, Temporal, AWS APIs).
    # S3 through a gateway endpoint instead of the NAT: agents move task files and bundles (up to
    # CONDUCTOR_MAX_BUNDLE_BYTES each) with presigned URLs, and the conductor its logs and blobs; the
    # endpoint is free, the NAT charges per GB.
    return aws_ec2.Vpc(
        scope,
        "Vpc",
        max_azs=2,
        nat_gateways=1,
        gateway_endpoints={
            "S3": aws_ec2.GatewayVpcEndpointOptions(
                service=aws_ec2.GatewayVpcEndpointAwsService.S3, subnets=[PRIVATE]
            )
        },
    )
