"""Large text kept beside the job store and referenced by its sha256, so it never travels in a Temporal
payload: a ticket's whole description when the intake had to cut it (contracts/tickets.py).

    <state dir>/blobs/<sha256>     the UTF-8 text, written once (atomically), read when a job's prompt is staged

Content-addressed, so a redelivered ticket writes the same file again and a reference never goes stale
while the file is there. Bounded per blob by the intake (an SQS body is at most 1 MiB).
"""

import hashlib
import re
from pathlib import Path

from stores.job_store import write_atomic

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def put(self, text: str) -> str:
        data = text.encode()
        digest = hashlib.sha256(data).hexdigest()
        path = self.root / digest
        if not path.exists():
            write_atomic(path, data)
        return digest

    def get(self, digest: str) -> str | None:
        """The text, or None when it is not here (or the reference is not a sha256)."""
        if not _SHA256.match(digest):
            return None
        try:
            data = (self.root / digest).read_bytes()
        except FileNotFoundError:
            return None
        # Checked, never trusted: a truncated or replaced file is as good as missing.
        return data.decode() if hashlib.sha256(data).hexdigest() == digest else None
