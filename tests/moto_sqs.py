"""moto's SQS with its retention check made O(1): the same answers, without the O(n^2) cost.

moto 5.2 checks each message it hands out against the queue's retention period by computing *every*
queue attribute (`Queue.attributes`), and three of those scan all of the queue's messages, each scan
calling `datetime` per message. A receive of 10 from a queue of 700 took 0.5-0.8 s of one core here, so
the 600-ticket scale tests measured moto's receive loop rather than the conductor. This reads the one
attribute the check needs; what it decides is unchanged (a message older than the queue's
MessageRetentionPeriod is not handed out).

`python -m tests.moto_sqs -H 127.0.0.1 -p PORT` runs moto's server with the check replaced.
"""

from moto.core.utils import unix_time
from moto.sqs.models import Message, SQSBackend


def _within_retention(self: SQSBackend, queue_name: str, message: Message) -> bool:
    retention_period = int(self.get_queue(queue_name).message_retention_period)
    return retention_period + message.sent_timestamp / 1000 > unix_time()  # type: ignore[operator]


def speed_up_retention_check() -> None:
    """Idempotent; affects this process's moto backends only."""
    SQSBackend.is_message_valid_based_on_retention_period = _within_retention  # type: ignore[method-assign]


if __name__ == "__main__":
    from moto.server import main

    speed_up_retention_check()
    main()
