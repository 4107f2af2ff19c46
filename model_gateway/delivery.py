"""Telling a job that its operator's instructions reached the running agent: the `steering_delivered` signal.

The job's `steer` update waits (bounded) on its own state for this signal (workflows/job_operations.py),
so nothing polls. Every model request of the agent carries all of the job's instructions
(model_gateway/steering.py); the job is told once per new instruction per attempt, by whichever replica
served the request, in the background: the request does not wait for Temporal. A signal that fails is
sent again with the attempt's next request; one sent twice (two replicas, a retry) changes nothing, the
workflow keeps the highest seq per attempt.

The mailbox's `steering-delivered` record is still written for `steer` updates of runs from before the
signal, whose activity polls it (activities/steering.py).
"""

import asyncio
import logging
from collections import OrderedDict

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from contracts.operator import SteeringDelivered
from stores.mailbox import JobMailbox

log = logging.getLogger(__name__)

# Attempts whose last signalled seq is remembered; past it the least recent are forgotten (their next
# request signals again, which the workflow ignores).
MAX_TRACKED_ATTEMPTS = 10_000


class SteeringDeliveries:
    def __init__(self, client: Client | None, mailbox: JobMailbox) -> None:
        # No client (the gateway without Temporal, in tests): only the mailbox's record.
        self._client = client
        self._mailbox = mailbox
        self._told: OrderedDict[tuple[str, int], int] = OrderedDict()
        self._tasks: set[asyncio.Task] = set()

    def carried(self, job_id: str, attempt: int, seq: int) -> None:
        """A model request of the attempt carried the job's instructions up to `seq` (0: none)."""
        key = (job_id, attempt)
        if seq <= 0 or self._told.get(key, 0) >= seq:
            return
        self._told[key] = seq  # before the send: the attempt's concurrent requests do not send it again
        self._told.move_to_end(key)
        while len(self._told) > MAX_TRACKED_ATTEMPTS:
            self._told.popitem(last=False)
        task = asyncio.get_running_loop().create_task(self._tell(job_id, attempt, seq))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def settled(self) -> None:
        """Every notice started so far has been sent (or has failed, and was logged); for tests and stop."""
        if self._tasks:
            await asyncio.wait(list(self._tasks))

    async def _tell(self, job_id: str, attempt: int, seq: int) -> None:
        try:
            await asyncio.to_thread(self._mailbox.mark_delivered, job_id, attempt, seq)
            if self._client is not None:
                await self._client.get_workflow_handle(job_id).signal(
                    "steering_delivered", SteeringDelivered(attempt=attempt, seq=seq)
                )
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return  # the job has ended: nothing waits for it
            self._forget(job_id, attempt, seq, err)
        except Exception as err:  # the blob store (local disk or S3): the next request tries again
            self._forget(job_id, attempt, seq, err)

    def _forget(self, job_id: str, attempt: int, seq: int, err: Exception) -> None:
        """The next request of the attempt tries again."""
        log.warning(
            "could not tell %s attempt %d that steering #%d was delivered: %s", job_id, attempt, seq, err
        )
        if self._told.get((job_id, attempt)) == seq:
            del self._told[(job_id, attempt)]
