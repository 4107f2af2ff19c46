"""Per-attempt model usage, kept in the job store beside the attempt's other files (JobAttemptDir.model_usage)."""

import asyncio
import logging
from pathlib import Path

from contracts.usage import ModelUsage
from stores.job_store import JobAttemptDir, write_atomic

log = logging.getLogger(__name__)


def read_usage(job: JobAttemptDir) -> ModelUsage:
    return job.model_usage() or ModelUsage()


class UsageLedger:
    """Adds each answer's usage to its attempt's totals; one writer at a time in this process.

    The write happens after the answer has gone back to the agent (`add_later`): inside the answer it was
    about a millisecond of every request's latency (benchmarks/gateway_bench.py). The budget check waits
    for its attempt's pending writes (`settled`), so a request never passes on usage not yet counted.
    """

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._pending: dict[Path, set[asyncio.Task]] = {}

    async def add(self, job: JobAttemptDir, usage: ModelUsage) -> ModelUsage:
        async with self._lock:
            total = read_usage(job).plus(usage)
            write_atomic(job.model_usage_path, total.model_dump_json().encode())
            return total

    def add_later(self, job: JobAttemptDir, usage: ModelUsage) -> None:
        path = job.model_usage_path
        task = asyncio.get_running_loop().create_task(self._add_logged(job, usage))
        pending = self._pending.setdefault(path, set())
        pending.add(task)

        def forget(done: asyncio.Task) -> None:
            pending.discard(done)
            if not pending:
                self._pending.pop(path, None)

        task.add_done_callback(forget)

    async def settled(self, job: JobAttemptDir) -> None:
        """Every write queued for this attempt so far is in its file (or has failed, and was logged)."""
        pending = list(self._pending.get(job.model_usage_path, ()))
        if pending:
            await asyncio.wait(pending)

    async def _add_logged(self, job: JobAttemptDir, usage: ModelUsage) -> None:
        try:
            total = await self.add(job, usage)
        except OSError as err:  # the job store's disk: the request itself has been answered already
            log.error("could not count model usage of %s attempt %d: %s", job.job_id, job.attempt, err)
            return
        log.debug("job %s attempt %d model usage so far: %s", job.job_id, job.attempt, total)
