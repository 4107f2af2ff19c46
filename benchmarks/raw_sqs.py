"""The raw SQS baseline the intake benches compare with: moto's queue alone, as the intake polls it; and the
feeder that keeps a bench's queue at a bounded backlog.

moto scans every message its queue holds, several times, for each message it hands out (py-spy on moto's
server: `receive_message` -> `is_message_valid_based_on_retention_period` -> `Queue.attributes`, which counts
the visible, delayed and in-flight messages), so its cost per message grows with the queue's depth; real
SQS's does not. A bench that queued all 10,000 alarms first would measure that. With `backlog`, bodies are
sent while they are consumed, never more than `backlog` of them waiting.
"""

import asyncio
import threading
import time
from collections.abc import Callable
from functools import partial


class Feeder:
    """Sends bodies with SendMessageBatch (10 a call) from a thread, keeping at most `backlog` unconsumed.

    The consumer reports progress with `consumed(n)`; `stop()` ends the thread early (a bench's time limit).
    """

    def __init__(self, sqs, queue_url: str, bodies: list[str], backlog: int | None) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._bodies = bodies
        self._backlog = backlog
        self._room = threading.Condition()
        self._consumed = 0
        self._stopped = False
        self.sent = 0

    def consumed(self, n: int) -> None:
        with self._room:
            self._consumed += n
            self._room.notify_all()

    def stop(self) -> None:
        with self._room:
            self._stopped = True
            self._room.notify_all()

    def _may_send(self, n: int) -> bool:
        if self._stopped or self._backlog is None:
            return True
        return self.sent - self._consumed + n <= max(self._backlog, n)

    def run(self) -> None:
        for start in range(0, len(self._bodies), 10):
            batch = self._bodies[start : start + 10]
            with self._room:
                self._room.wait_for(partial(self._may_send, len(batch)))
                if self._stopped:
                    return
            entries = [{"Id": str(j), "MessageBody": b} for j, b in enumerate(batch)]
            failed = self._sqs.send_message_batch(QueueUrl=self._queue_url, Entries=entries).get("Failed")
            assert not failed, failed
            self.sent += len(batch)


async def consume_while_feeding(feeder: Feeder, consume: Callable[[], "asyncio.Future[None]"]) -> None:
    """Run the feeder's thread beside `consume()`, which reports to it; stop the thread however it ends."""
    feeding = asyncio.ensure_future(asyncio.to_thread(feeder.run))
    try:
        await consume()
        await feeding
    finally:
        feeder.stop()
        if not feeding.done():
            await asyncio.shield(feeding)


async def raw_sqs_rate(
    sqs, queue_url: str, bodies: list[str], pollers: int, backlog: int | None = None
) -> float:
    """The queue alone: receive and batch-delete the bodies with the intake's poller count.

    Without `backlog`, every body is sent first; with it, they are sent while being received (see `Feeder`)
    and the clock starts with the first send.
    """
    n = len(bodies)
    feeder = Feeder(sqs, queue_url, bodies, backlog)
    if backlog is None:
        feeder.run()
    began, handled, finished = time.perf_counter(), 0, 0.0

    def drain() -> None:
        nonlocal handled, finished
        while handled < n:
            got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
            messages = got.get("Messages", [])
            if messages:
                sqs.delete_message_batch(
                    QueueUrl=queue_url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
                    ],
                )
            handled += len(messages)
            feeder.consumed(len(messages))
            finished = time.perf_counter()

    async def consume() -> None:
        await asyncio.gather(*(asyncio.to_thread(drain) for _ in range(pollers)))

    if backlog is None:
        await consume()
    else:
        await consume_while_feeding(feeder, consume)
    return n / (finished - began)
