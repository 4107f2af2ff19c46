"""Intake: tickets and alarms from SQS and webhooks, parsed and bounded, started as workflows; the dead-letter queue."""
