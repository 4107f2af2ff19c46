"""Per-attempt model usage, kept in the job store beside the attempt's other files (JobAttemptDir.model_usage)."""

import asyncio

from conductor_worker.job_store import JobAttemptDir, write_atomic
from contracts.usage import ModelUsage


def read_usage(job: JobAttemptDir) -> ModelUsage:
    return job.model_usage() or ModelUsage()


class UsageLedger:
    """Adds each answer's usage to its attempt's totals; one writer at a time in this process."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()

    async def add(self, job: JobAttemptDir, usage: ModelUsage) -> ModelUsage:
        async with self._lock:
            total = read_usage(job).plus(usage)
            write_atomic(job.model_usage_path, total.model_dump_json().encode())
            return total
