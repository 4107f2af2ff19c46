"""The intake's dead-letter queue: find it, look into it, send its messages back (`conductor dlq`).

SQS has no peek: listing receives the messages with a short visibility timeout and releases them again
(visibility 0) when done, so a listing leaves the DLQ as it found it (each receive adds one to a
message's receive count, which the DLQ does not act on). Redrive is receive -> send to the source queue
-> delete: SQS's own StartMessageMoveTask does the same server-side but moto does not implement it, and
a crash between the send and the delete only makes a second copy, which the workflow id turns into the
same job (`ticket/jira/ENG-123` starts once; a second start finds it).
"""

import json
from typing import Any

from pydantic import BaseModel

# Set by the intake on each message it dead-letters (conductor_worker/intake/sqs.py).
REASON_ATTRIBUTE = "ConductorRejectReason"
SOURCE_ID_ATTRIBUTE = "SourceMessageId"
# Set on a message redriven to the source queue: the DLQ message it came from.
REDRIVEN_FROM_ATTRIBUTE = "RedrivenFromMessageId"
# A listing looks at no more than this many messages (10 per receive).
LIST_LIMIT = 1000
# How long a listing holds what it received; it releases them as soon as it is done.
HOLD_SECONDS = 60
PREVIEW_CHARS = 60


class DeadLetter(BaseModel):
    message_id: str
    receipt_handle: str
    body: str
    # The intake's reason; empty when SQS's redrive policy moved it (maxReceiveCount reached).
    reason: str = ""
    source_message_id: str = ""
    receive_count: int = 0
    sent_at_ms: int = 0

    @property
    def why(self) -> str:
        return self.reason or "(moved by the queue's redrive policy: no reason recorded)"

    @property
    def preview(self) -> str:
        """The first characters of the body on one line, control characters escaped."""
        text = self.body[:PREVIEW_CHARS].encode("unicode_escape").decode("ascii")
        return text + ("…" if len(self.body) > PREVIEW_CHARS else "")


def find_dlq(sqs: Any, queue_url: str, configured: str = "") -> str | None:
    """The configured DLQ, else the one the queue's RedrivePolicy names, else None."""
    if configured:
        return configured
    attrs = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["RedrivePolicy"])
    policy = attrs.get("Attributes", {}).get("RedrivePolicy")
    if not policy:
        return None
    dlq_name = json.loads(policy)["deadLetterTargetArn"].rsplit(":", 1)[-1]
    return sqs.get_queue_url(QueueName=dlq_name)["QueueUrl"]


class DeadLetterQueue:
    def __init__(self, sqs: Any, dlq_url: str, source_url: str) -> None:
        self._sqs = sqs
        self.url = dlq_url
        self.source_url = source_url

    def receive_all(self, limit: int = LIST_LIMIT) -> list[DeadLetter]:
        """Every message (up to `limit`), oldest first, held invisible until `release` or `redrive`."""
        seen: dict[str, DeadLetter] = {}
        while len(seen) < limit:
            got = self._sqs.receive_message(
                QueueUrl=self.url,
                MaxNumberOfMessages=min(10, limit - len(seen)),
                VisibilityTimeout=HOLD_SECONDS,
                WaitTimeSeconds=0,
                MessageAttributeNames=["All"],
                AttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
            ).get("Messages", [])
            if not got:
                break
            for message in got:
                seen[message["MessageId"]] = _dead_letter(message)
        return sorted(seen.values(), key=lambda d: d.sent_at_ms)

    def release(self, letters: list[DeadLetter]) -> None:
        """Visible again at once: a listing leaves the queue as it was."""
        for batch in _batches(letters):
            self._sqs.change_message_visibility_batch(
                QueueUrl=self.url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": d.receipt_handle, "VisibilityTimeout": 0}
                    for i, d in enumerate(batch)
                ],
            )

    def redrive(self, letter: DeadLetter) -> str:
        """Send it back to the source queue, then delete it here; returns the new message id."""
        sent = self._sqs.send_message(
            QueueUrl=self.source_url,
            MessageBody=letter.body,
            MessageAttributes={
                REDRIVEN_FROM_ATTRIBUTE: {"DataType": "String", "StringValue": letter.message_id}
            },
        )
        self._sqs.delete_message(QueueUrl=self.url, ReceiptHandle=letter.receipt_handle)
        return sent["MessageId"]


def _dead_letter(message: dict) -> DeadLetter:
    attrs = message.get("MessageAttributes", {})
    system = message.get("Attributes", {})
    return DeadLetter(
        message_id=message["MessageId"],
        receipt_handle=message["ReceiptHandle"],
        body=message["Body"],
        reason=attrs.get(REASON_ATTRIBUTE, {}).get("StringValue", ""),
        source_message_id=attrs.get(SOURCE_ID_ATTRIBUTE, {}).get("StringValue", ""),
        receive_count=int(system.get("ApproximateReceiveCount", 0)),
        sent_at_ms=int(system.get("SentTimestamp", 0)),
    )


def _batches(letters: list[DeadLetter]) -> list[list[DeadLetter]]:
    return [letters[i : i + 10] for i in range(0, len(letters), 10)]
