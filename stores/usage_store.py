"""A job attempt's model usage in the blob store every replica shares: one object per model request.

    jobs/<job>/attempt-<n>/model-usage/<request id>.json    ModelUsage of that one answer

The model gateway of whichever replica served a request writes its object once, under an id of its own
(two replicas never write the same object), and the attempt's usage is the sum of its objects. So a job
whose requests are served by two replicas is metered once, as one, and its budget holds across them.

Objects never change: each is read once and kept. The list of an attempt's objects is re-read at most
every RELIST_SECONDS on a remote store (S3); a request this process counted is in its own list at once,
so a replica's budget check never misses its own answers, and sees another replica's within that time.
"""

import threading
import time
import uuid

from contracts.ids import safe_name
from contracts.usage import ModelUsage
from stores.blob_store import BlobStore

RELIST_SECONDS = 2.0
MAX_OBJECT_BYTES = 4096
# Attempts whose list is kept, and usage objects kept; past either, the cache starts again.
CACHED_ATTEMPTS = 4096
CACHED_OBJECTS = CACHED_ATTEMPTS * 64


def usage_prefix(job_id: str, attempt: int) -> str:
    return f"jobs/{safe_name(job_id)}/attempt-{attempt}/model-usage/"


class AttemptUsageStore:
    def __init__(self, blobs: BlobStore) -> None:
        self.blobs = blobs
        self._usage: dict[str, ModelUsage] = {}  # key -> one request's usage (objects never change)
        self._listed: dict[str, tuple[float, set[str]]] = {}  # prefix -> (when, keys)
        self._lock = threading.Lock()

    def add(self, job_id: str, attempt: int, usage: ModelUsage, request_id: str = "") -> str:
        """Count one request's usage; returns its key. A retried write of the same `request_id` is the
        same object, counted once."""
        prefix = usage_prefix(job_id, attempt)
        key = f"{prefix}{safe_name(request_id or uuid.uuid4().hex)}.json"
        self.blobs.put_bytes(key, usage.model_dump_json().encode())
        with self._lock:
            self._remember(key, usage)
            # Time 0: not a whole list, only what this process wrote; the next total lists again.
            self._listed.setdefault(prefix, (0.0, set()))[1].add(key)
        return key

    def total(self, job_id: str, attempt: int, fresh: bool = False) -> ModelUsage | None:
        """The attempt's usage so far; None when it made no model request through the gateway.
        `fresh`: list the attempt's objects now (the final count), not from the last few seconds."""
        keys = self._keys(usage_prefix(job_id, attempt), fresh)
        if not keys:
            return None
        total = ModelUsage()
        for key in sorted(keys):
            with self._lock:
                usage = self._usage.get(key)
            if usage is None:
                usage = ModelUsage.model_validate_json(self.blobs.get_bytes(key, max_bytes=MAX_OBJECT_BYTES))
                with self._lock:
                    self._remember(key, usage)
            total = total.plus(usage)
        return total

    def _keys(self, prefix: str, fresh: bool = False) -> set[str]:
        now = time.monotonic()
        with self._lock:
            listed = self._listed.get(prefix)
        if fresh or listed is None or not self.blobs.remote or now - listed[0] >= RELIST_SECONDS:
            stored = set(self.blobs.keys(prefix))
            with self._lock:
                if len(self._listed) >= CACHED_ATTEMPTS:
                    self._listed.clear()  # a cache: what is dropped is listed again
                # Objects are never removed: what was known stays, writes of this process that finished
                # while the list was read included.
                listed = (now, stored | self._listed.get(prefix, (0.0, set()))[1])
                self._listed[prefix] = listed
        with self._lock:
            return set(listed[1])

    def _remember(self, key: str, usage: ModelUsage) -> None:
        if len(self._usage) >= CACHED_OBJECTS:
            self._usage.clear()
        self._usage[key] = usage
