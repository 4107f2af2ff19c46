"""Container images from a URI given as context, with pull rights on exactly that ECR repository.

`ContainerImage.from_registry` grants nothing, so an ECR image named that way fails to pull; the managed
execution-role policy would grant pulls from every repository. An ECR URI becomes a repository reference
instead, and CDK grants the execution role pulls from that one repository.
"""

import re

from aws_cdk import aws_ecr, aws_ecs
from constructs import Construct

# <account>.dkr.ecr.<region>.amazonaws.com[.cn]/<name>[:<tag>|@<digest>]
_ECR_URI = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?P<china>\.cn)?"
    r"/(?P<name>[a-z0-9._/-]+?)(?::(?P<tag>[\w.-]+)|@(?P<digest>sha256:[0-9a-f]{64}))?$"
)


def container_image(scope: Construct, id: str, uri: str) -> aws_ecs.ContainerImage:
    match = _ECR_URI.match(uri)
    if match is None:
        return aws_ecs.ContainerImage.from_registry(uri)
    partition = "aws-cn" if match["china"] else "aws"
    arn = f"arn:{partition}:ecr:{match['region']}:{match['account']}:repository/{match['name']}"
    repository = aws_ecr.Repository.from_repository_arn(scope, id, arn)
    return aws_ecs.ContainerImage.from_ecr_repository(repository, match["digest"] or match["tag"] or "latest")
