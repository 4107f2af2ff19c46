"""The conductor process: Temporal worker, agent gateway, SQS intake, config and CLI."""
