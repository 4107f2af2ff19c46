"""Staged job attempts in the blob store: what an attempt's agent may fetch, and what it may spend.

    jobs/<job id as a file name>/attempt-<n>/files/<path>   the task files
    jobs/<job id as a file name>/attempt-<n>/attempt.json   this record (StagedAttempt), written last
    jobs/<job id as a file name>/attempt-<n>/ended          there once the attempt's result is in
    jobs/<job id as a file name>/attempt-<n>/bundles/<sha256>.bundle
                                                            an agent's git bundle, named by its sha256

A bundle is named by its content: should two agents of one attempt run (a launch retried after its
conductor died), neither can replace the bundle of the result the job accepted, on whichever replica.

Any conductor sharing the blob store serves any attempt: the record is the proof an attempt was staged
(an agent's token opens nothing else), and a staged next attempt supersedes it. A record never changes
once its attempt's agent can hold a token (tokens are minted at launch, after staging completed), so it
is cached; "superseded" is for good, and "not superseded" is re-checked at every call on a local store, every
few seconds on a remote one (S3: a request each).
"""

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from pydantic import BaseModel

from contracts.ids import safe_name
from contracts.jobs import TaskFile
from contracts.task_paths import check_relative_path
from stores.blob_store import BlobMissing, BlobStore

RECORD = "attempt.json"
ENDED = "ended"  # empty; there once the attempt's result is in
# With a remote store, an agent of a superseded attempt may go on for this long before its calls are
# refused (its result is refused by the job anyway: conductor_worker/gateway/agent_channel.py).
SUPERSEDED_RECHECK_SECONDS = 5.0
CACHED_RECORDS = 4096
_SHA256_HEX = re.compile("[0-9a-f]{64}")
# Different bundles one attempt may store: one agent's, a second agent's (a retried launch), retries.
BUNDLES_PER_ATTEMPT = 4


class StagedFile(BaseModel):
    path: str
    size: int
    sha256: str


class StagedAttempt(BaseModel):
    job_id: str
    attempt: int
    files: list[StagedFile]
    # The model gateway's allowances for this attempt (its policy's token_budget, cost_budget_usd); 0: none.
    token_budget: int = 0
    cost_budget_usd: float = 0.0
    # The W3C trace context the attempt was staged in (its staging activity's span), when the conductor
    # traces: the gateway hangs the agent's steps under it (conductor_worker/gateway/agent_spans.py). Empty: none.
    traceparent: str = ""
    # Unix time (seconds) of the staging: no span of the attempt's agent starts before it. 0: not known.
    staged_at: float = 0.0

    def file(self, path: str) -> StagedFile:
        """The staged file for a handshake path; anything not staged is refused."""
        for staged in self.files:
            if staged.path == path:
                return staged
        raise FileNotFoundError(f"no task file {path!r} for {self.job_id} attempt {self.attempt}")


def attempt_prefix(job_id: str, attempt: int) -> str:
    return f"jobs/{safe_name(job_id)}/attempt-{attempt}/"


def file_key(job_id: str, attempt: int, path: str) -> str:
    return attempt_prefix(job_id, attempt) + "files/" + check_relative_path(path).as_posix()


def bundles_prefix(job_id: str, attempt: int) -> str:
    return attempt_prefix(job_id, attempt) + "bundles/"


def bundle_key(job_id: str, attempt: int, sha256: str) -> str:
    """Where the bundle whose sha256 (hex) is `sha256` goes; ValueError for anything else."""
    if not _SHA256_HEX.fullmatch(sha256):
        raise ValueError(f"not a sha256 in hex: {sha256[:80]!r}")
    return bundles_prefix(job_id, attempt) + sha256 + ".bundle"


class StagedAttempts:
    def __init__(self, blobs: BlobStore) -> None:
        self.blobs = blobs
        self._records: OrderedDict[tuple[str, int], StagedAttempt] = OrderedDict()
        self._lock = threading.Lock()
        recheck = SUPERSEDED_RECHECK_SECONDS if blobs.remote else 0.0
        self._superseded = _FactForGood(recheck)
        self._ended = _FactForGood(recheck)

    def stage(
        self,
        job_id: str,
        attempt: int,
        files: list[TaskFile],
        token_budget: int = 0,
        cost_budget_usd: float = 0.0,
        traceparent: str = "",
    ) -> StagedAttempt:
        """Store the files, then the record naming them; staging the same attempt again rewrites both."""
        staged = []
        for task_file in files:
            data = task_file.content.encode()
            sha256 = self.blobs.put_bytes(file_key(job_id, attempt, task_file.path), data)
            staged.append(StagedFile(path=task_file.path, size=len(data), sha256=sha256))
        record = StagedAttempt(
            job_id=job_id,
            attempt=attempt,
            files=staged,
            token_budget=token_budget,
            cost_budget_usd=cost_budget_usd,
            traceparent=traceparent,
            staged_at=time.time(),
        )
        self.blobs.put_bytes(
            attempt_prefix(job_id, attempt) + RECORD, record.model_dump_json(indent=2).encode()
        )
        with self._lock:
            self._records.pop((job_id, attempt), None)
        return record

    def get(self, job_id: str, attempt: int) -> StagedAttempt | None:
        key = (job_id, attempt)
        with self._lock:
            if key in self._records:
                self._records.move_to_end(key)
                return self._records[key]
        try:
            raw = self.blobs.get_bytes(attempt_prefix(job_id, attempt) + RECORD, max_bytes=4 * 2**20)
        except BlobMissing:
            return None
        record = StagedAttempt.model_validate_json(raw)
        with self._lock:
            self._records[key] = record
            while len(self._records) > CACHED_RECORDS:
                self._records.popitem(last=False)
        return record

    def superseded(self, job_id: str, attempt: int) -> bool:
        """True once a later attempt of the job has been staged."""
        later = attempt_prefix(job_id, attempt + 1) + RECORD
        return self._superseded.holds((job_id, attempt), lambda: self.blobs.size(later) is not None)

    def mark_ended(self, job_id: str, attempt: int) -> None:
        """The attempt's result is in (on this replica): every replica's model gateway refuses its token."""
        self.blobs.put_bytes(attempt_prefix(job_id, attempt) + ENDED, b"")
        self._ended.learn((job_id, attempt))

    def ended(self, job_id: str, attempt: int) -> bool:
        marker = attempt_prefix(job_id, attempt) + ENDED
        return self._ended.holds((job_id, attempt), lambda: self.blobs.size(marker) is not None)


class _FactForGood:
    """A per-attempt fact that, once true, stays true (superseded, ended): a true answer is cached for good,
    a false one for `recheck` seconds (0: asked again every time, as on a local store)."""

    def __init__(self, recheck: float) -> None:
        self._recheck = recheck
        self._true: set[tuple[str, int]] = set()
        self._false_until: dict[tuple[str, int], float] = {}
        self._lock = threading.Lock()

    def holds(self, key: tuple[str, int], probe: Callable[[], bool]) -> bool:
        now = time.monotonic()
        with self._lock:
            if key in self._true:
                return True
            if self._false_until.get(key, 0.0) > now:
                return False
        if probe():
            self.learn(key)
            return True
        if self._recheck:
            with self._lock:
                self._false_until[key] = now + self._recheck
                if len(self._false_until) > CACHED_RECORDS:
                    # Past entries are only a cache: drop the expired ones, or all when none has expired.
                    live = {k: t for k, t in self._false_until.items() if t > now}
                    self._false_until = live if len(live) < CACHED_RECORDS else {}
        return False

    def learn(self, key: tuple[str, int]) -> None:
        with self._lock:
            if len(self._true) >= CACHED_RECORDS:
                self._true.clear()  # only a cache: a true fact is found again
            self._true.add(key)
            self._false_until.pop(key, None)
