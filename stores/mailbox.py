"""A job's mailbox in the blob store: operator instructions (`steer`) and later alarms of its incident chain,
for its running agent and every later attempt, and which instruction a model request of an attempt carried.

    jobs/<job>/steering/<seq>.json                      {"seq": 1, "text": ..., "by": ...}
    jobs/<job>/alarms/<sha256 of the event id>.json     {"event_id": ..., "at": ..., "text": ...}
    jobs/<job>/attempt-<n>/steering-delivered/<seq>     (empty) a model request carried instruction seq

The job workflow holds the instructions and alarms; its activities put each entry here once (an object per
entry: written again it is the same, and two replicas never race on one object). The agent gateway, the
model gateway and the stager read them on any replica. On a remote store the list of a job's entries is
re-read at most every few seconds.
"""

import hashlib
import json
import threading
import time

from contracts.ids import safe_name
from stores.blob_store import BlobStore

RELIST_SECONDS = 3.0
MAX_ENTRY_BYTES = 256 * 1024
CACHED_JOBS = 4096


def _job_prefix(job_id: str) -> str:
    return f"jobs/{safe_name(job_id)}/"


class JobMailbox:
    def __init__(self, blobs: BlobStore) -> None:
        self.blobs = blobs
        self._entries: dict[str, dict] = {}  # key -> entry (entries never change)
        self._listed: dict[str, tuple[float, list[str]]] = {}  # prefix -> (when, keys)
        self._lock = threading.Lock()

    # -- writing (activities) ------------------------------------------------------------------------

    def add_steering(self, job_id: str, seq: int, text: str, by: str) -> None:
        entry = {"seq": seq, "text": text, "by": by}
        self._put_once(f"{_job_prefix(job_id)}steering/{seq:06d}.json", entry)

    def add_later_alarms(self, job_id: str, alarms: list[dict]) -> None:
        """Each {"event_id", "at", "text"} once, however often it is delivered."""
        for alarm in alarms:
            name = hashlib.sha256(alarm["event_id"].encode()).hexdigest()[:32]
            self._put_once(f"{_job_prefix(job_id)}alarms/{name}.json", alarm)

    def mark_delivered(self, job_id: str, attempt: int, seq: int) -> None:
        key = f"{_job_prefix(job_id)}attempt-{attempt}/steering-delivered/{seq:06d}"
        if self.blobs.size(key) is None:
            self.blobs.put_bytes(key, b"")

    def _put_once(self, key: str, entry: dict) -> None:
        if self.blobs.size(key) is None:
            self.blobs.put_bytes(key, json.dumps(entry).encode())

    # -- reading (gateways, stager) ---------------------------------------------------------------------

    def steering(self, job_id: str) -> list[dict]:
        """The job's instructions in order: {"seq", "text", "by"}."""
        return sorted(self._read(f"{_job_prefix(job_id)}steering/"), key=lambda entry: entry["seq"])

    def later_alarms(self, job_id: str) -> list[dict]:
        """The alarms that came while an agent of the job ran, oldest first: {"event_id", "at", "text"}."""
        return sorted(self._read(f"{_job_prefix(job_id)}alarms/"), key=lambda a: (a["at"], a["event_id"]))

    def delivered(self, job_id: str, attempt: int) -> int:
        """The highest instruction a model request of the attempt carried; 0: none (never cached)."""
        keys = self.blobs.keys(f"{_job_prefix(job_id)}attempt-{attempt}/steering-delivered/")
        return max((int(key.rsplit("/", 1)[1]) for key in keys), default=0)

    def _read(self, prefix: str) -> list[dict]:
        now = time.monotonic()
        with self._lock:
            listed = self._listed.get(prefix)
        if listed is None or not self.blobs.remote or now - listed[0] >= RELIST_SECONDS:
            listed = (now, self.blobs.keys(prefix))
            with self._lock:
                if len(self._listed) >= CACHED_JOBS:
                    self._listed.clear()  # a cache: what is dropped is listed again
                self._listed[prefix] = listed
        entries = []
        for key in listed[1]:
            with self._lock:
                entry = self._entries.get(key)
            if entry is None:
                entry = json.loads(self.blobs.get_bytes(key, max_bytes=MAX_ENTRY_BYTES))
                with self._lock:
                    if len(self._entries) >= CACHED_JOBS * 8:
                        self._entries.clear()
                    self._entries[key] = entry
            entries.append(entry)
        return entries
