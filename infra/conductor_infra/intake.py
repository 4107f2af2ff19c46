"""The intake queue, its dead-letter queue, and the EventBridge rule that feeds it CloudWatch alarms.

Tickets (Jira webhooks and the like) are sent to the same queue by whatever forwards them; its URL is a
stack output.
"""

from aws_cdk import Duration, aws_events, aws_events_targets, aws_sqs
from constructs import Construct

# The conductor's default CONDUCTOR_SQS_VISIBILITY_TIMEOUT_SECONDS; the service is given the same value.
VISIBILITY_TIMEOUT = Duration.seconds(60)
# A message the conductor received this often without deleting it is moved to the DLQ by SQS. The
# conductor dead-letters unparseable messages itself at once; this catches the ones that crash it.
MAX_RECEIVE_COUNT = 5
# The conductor accepts all three; only ALARM spawns work, the others are recorded on the chain.
ALARM_STATES = ["ALARM", "OK", "INSUFFICIENT_DATA"]


class Intake(Construct):
    def __init__(self, scope: Construct, id: str) -> None:
        super().__init__(scope, id)
        self.dead_letters = aws_sqs.Queue(
            self,
            "DeadLetters",
            retention_period=Duration.days(14),
            encryption=aws_sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
        )
        # SQS-managed encryption, not KMS: EventBridge can deliver to it without a key policy.
        self.queue = aws_sqs.Queue(
            self,
            "Queue",
            visibility_timeout=VISIBILITY_TIMEOUT,
            dead_letter_queue=aws_sqs.DeadLetterQueue(
                queue=self.dead_letters, max_receive_count=MAX_RECEIVE_COUNT
            ),
            encryption=aws_sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
        )
        # The target delivers the whole event as the message body: the shape the intake parses first.
        aws_events.Rule(
            self,
            "AlarmStateChanges",
            description="CloudWatch alarm state changes for the agent conductor",
            event_pattern=aws_events.EventPattern(
                source=["aws.cloudwatch"],
                detail_type=["CloudWatch Alarm State Change"],
                detail={"state": {"value": ALARM_STATES}},
            ),
            targets=[aws_events_targets.SqsQueue(self.queue)],
        )
