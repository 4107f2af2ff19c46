"""The raw SQS baseline the intake benches compare with: moto's queue alone, as the intake polls it."""

import asyncio
import time


async def raw_sqs_rate(sqs, queue_url: str, bodies: list[str], pollers: int) -> float:
    """The queue alone: send the bodies, then receive and batch-delete them with the intake's poller count."""
    n = len(bodies)
    for start in range(0, n, 10):
        sqs.send_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(j), "MessageBody": b} for j, b in enumerate(bodies[start : start + 10])],
        )
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
            finished = time.perf_counter()

    await asyncio.gather(*(asyncio.to_thread(drain) for _ in range(pollers)))
    return n / (finished - began)
