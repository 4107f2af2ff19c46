"""Per-attempt model usage, kept beside the attempt's other files (`model-usage.json`)."""

import asyncio
from pathlib import Path

from conductor_worker.job_store import JobAttemptDir, write_atomic
from contracts.usage import ModelUsage

USAGE_FILE = "model-usage.json"


def usage_path(job: JobAttemptDir) -> Path:
    return job.root / USAGE_FILE


def read_usage(job: JobAttemptDir) -> ModelUsage:
    path = usage_path(job)
    return ModelUsage.model_validate_json(path.read_bytes()) if path.exists() else ModelUsage()


class UsageLedger:
    """Adds each answer's usage to its attempt's totals; one writer at a time in this process."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()

    async def add(self, job: JobAttemptDir, usage: ModelUsage) -> ModelUsage:
        async with self._lock:
            total = read_usage(job).plus(usage)
            write_atomic(usage_path(job), total.model_dump_json().encode())
            return total
