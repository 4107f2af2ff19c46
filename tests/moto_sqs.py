"""moto's SQS with its retention check made O(1), and a message handed to one receiver at a time.

moto 5.2 checks each message it hands out against the queue's retention period by computing *every*
queue attribute (`Queue.attributes`), and three of those scan all of the queue's messages, each scan
calling `datetime` per message. A receive of 10 from a queue of 700 took 0.5-0.8 s of one core here, so
the 600-ticket scale tests measured moto's receive loop rather than the conductor. This reads the one
attribute the check needs; what it decides is unchanged (a message older than the queue's
MessageRetentionPeriod is not handed out).

moto 5.2's receive checks that a message is visible and then marks it received, with no lock between:
two receives at once (its server is threaded; the intake runs 4 pollers) can both take one message. CI
saw it twice (session 11's `test_metrics`: a ticket counted started twice; stop 21: one message counted a
duplicate it was not sent as). SQS hides a received message from other receivers for its visibility
timeout; here each pass over a queue runs under one lock, and the long poll waits outside it, as moto's
own loop does (`Queue.wait_for_messages`, 1 s at a time).

`python -m tests.moto_sqs -H 127.0.0.1 -p PORT` runs moto's server with both changes.
"""

import threading

from moto.core.utils import unix_time
from moto.sqs.models import Message, SQSBackend

_moto_receive = SQSBackend.receive_message
_one_receive_at_a_time = threading.Lock()


def _within_retention(self: SQSBackend, queue_name: str, message: Message) -> bool:
    retention_period = int(self.get_queue(queue_name).message_retention_period)
    return retention_period + message.sent_timestamp / 1000 > unix_time()  # type: ignore[operator]


def _receive_message(
    self: SQSBackend,
    queue_name: str,
    count: int,
    wait_seconds_timeout: int,
    visibility_timeout: int,
    message_attribute_names: list[str] | None = None,
) -> list[Message]:
    deadline = unix_time() + wait_seconds_timeout
    while True:
        with _one_receive_at_a_time:
            taken = _moto_receive(self, queue_name, count, 0, visibility_timeout, message_attribute_names)
        if taken or unix_time() >= deadline:
            return taken
        self.get_queue(queue_name).wait_for_messages(1)


def patch_moto_sqs() -> None:
    """Idempotent; affects this process's moto backends only."""
    SQSBackend.is_message_valid_based_on_retention_period = _within_retention  # type: ignore[method-assign]
    SQSBackend.receive_message = _receive_message  # type: ignore[method-assign]


if __name__ == "__main__":
    from moto.server import main

    patch_moto_sqs()
    main()
