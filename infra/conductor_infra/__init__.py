"""The AWS CDK app that deploys the conductor: one stack, one construct module per concern (README in infra/)."""
