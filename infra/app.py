#!/usr/bin/env python3
"""`cdk synth` / `cdk deploy` entry point (cdk.json). Parameters: infra/README.md."""

import os
import sys

import aws_cdk as cdk

from conductor_infra.parameters import Parameters
from conductor_infra.stack import ConductorStack

app = cdk.App()
try:
    parameters = Parameters.from_context(app.node)
except ValueError as err:
    sys.exit(f"{err} (infra/README.md)")
# The CLI's credentials name the account and region; a VPC lookup (-c vpcId=…) needs both.
environment = cdk.Environment(
    account=os.getenv("CDK_DEFAULT_ACCOUNT"), region=os.getenv("CDK_DEFAULT_REGION")
)
ConductorStack(app, "AgentConductor", parameters=parameters, env=environment)
app.synth()
