"""The stand-in's receive lock (tests/moto_sqs.py): moto alone hands one message to two receivers at once."""

import threading
import time
import uuid
from collections import Counter

import pytest
from moto.sqs.models import Message, SQSBackend

from tests import moto_sqs

RECEIVERS = 4
MESSAGES = 6


def received_by_concurrent_receivers(receive, monkeypatch) -> Counter:
    """How often each message was handed out when RECEIVERS receive at once; moto's window between its
    visibility check and its mark is widened (a thread switch there is what CI hit)."""
    mark = Message.mark_received

    def slow_mark(self, visibility_timeout=None):
        time.sleep(0.02)
        mark(self, visibility_timeout)

    monkeypatch.setattr(Message, "mark_received", slow_mark)
    backend = SQSBackend("us-east-1", "123456789012")
    name = f"q-{uuid.uuid4().hex[:8]}"
    backend.create_queue(name)
    for n in range(MESSAGES):
        backend.send_message(name, f"m{n}")
    start, seen, lock = threading.Barrier(RECEIVERS), Counter(), threading.Lock()

    def receiver():
        start.wait()
        for message in receive(backend, name, 10, 0, 60):
            with lock:
                seen[message.body] += 1

    threads = [threading.Thread(target=receiver) for _ in range(RECEIVERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return seen


def test_moto_alone_hands_one_message_to_two_receivers(monkeypatch):
    seen = received_by_concurrent_receivers(moto_sqs._moto_receive, monkeypatch)
    assert max(seen.values()) > 1, seen  # the race the lock is for: without it, a message goes out twice


@pytest.mark.parametrize("wait_seconds", [0, 1])
def test_with_the_lock_each_message_goes_to_one_receiver(monkeypatch, wait_seconds):
    def receive(backend, name, count, _wait, visibility):
        return moto_sqs._receive_message(backend, name, count, wait_seconds, visibility)

    seen = received_by_concurrent_receivers(receive, monkeypatch)
    assert seen == Counter({f"m{n}": 1 for n in range(MESSAGES)})
