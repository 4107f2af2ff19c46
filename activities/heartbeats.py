"""Run a blocking call in a thread while heartbeating, so a dead conductor is noticed in seconds.

Without heartbeats Temporal only notices a worker that died mid-call when the start-to-close timeout
expires (minutes for a push); with them, after `heartbeat_timeout`, and the retry runs elsewhere.
"""

import asyncio
from collections.abc import Callable
from typing import TypeVar

from temporalio import activity

T = TypeVar("T")
BEAT_SECONDS = 2.0


async def in_thread_with_heartbeats(fn: Callable[..., T], *args: object) -> T:
    call = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    while True:
        done, _ = await asyncio.wait({call}, timeout=BEAT_SECONDS)
        if done:
            return call.result()
        activity.heartbeat()
