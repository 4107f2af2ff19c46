"""Per-attempt model usage, in the blob store every replica shares (stores/usage_store.py): one object per
answered request, summed when read, so the attempt's requests count once whichever replica served them."""

import asyncio
import logging

from contracts.usage import ModelUsage
from stores.job_store import JobAttemptDir
from stores.usage_store import AttemptUsageStore

log = logging.getLogger(__name__)


def read_usage(store: AttemptUsageStore, job: JobAttemptDir) -> ModelUsage:
    return store.total(job.job_id, job.attempt) or ModelUsage()


class UsageLedger:
    """Counts each answer's usage for its attempt, in the shared store.

    The write happens after the answer has gone back to the agent (`add_later`): inside the answer it was
    about a millisecond of every request's latency (benchmarks/gateway_bench.py). The budget check waits
    for its attempt's pending writes in this process (`settled`), so a request never passes on usage this
    replica has not counted yet; another replica's answers count from its next list of the attempt's
    objects (at most stores/usage_store.RELIST_SECONDS later).
    """

    def __init__(self, store: AttemptUsageStore) -> None:
        self.store = store
        self._pending: dict[tuple[str, int], set[asyncio.Task]] = {}

    async def add(self, job: JobAttemptDir, usage: ModelUsage) -> None:
        await asyncio.to_thread(self.store.add, job.job_id, job.attempt, usage)

    def add_later(self, job: JobAttemptDir, usage: ModelUsage) -> None:
        key = (job.job_id, job.attempt)
        task = asyncio.get_running_loop().create_task(self._add_logged(job, usage))
        pending = self._pending.setdefault(key, set())
        pending.add(task)

        def forget(done: asyncio.Task) -> None:
            pending.discard(done)
            if not pending:
                self._pending.pop(key, None)

        task.add_done_callback(forget)

    async def settled(self, job: JobAttemptDir) -> None:
        """Every write queued for this attempt so far is in the store (or has failed, and was logged)."""
        pending = list(self._pending.get((job.job_id, job.attempt), ()))
        if pending:
            await asyncio.wait(pending)

    async def total(self, job: JobAttemptDir) -> ModelUsage:
        return await asyncio.to_thread(read_usage, self.store, job)

    async def _add_logged(self, job: JobAttemptDir, usage: ModelUsage) -> None:
        try:
            await self.add(job, usage)
        except Exception as err:  # the blob store (disk or S3): the request itself was answered already
            log.error("could not count model usage of %s attempt %d: %s", job.job_id, job.attempt, err)
