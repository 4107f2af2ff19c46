"""Bulk bytes the conductor keeps outside workflow history, behind one interface with two backends.

    local   a directory (<state dir>/blobs by default): the embedded default for one host
    s3      an S3 bucket (boto3): conductors on several hosts share it, and agents given presigned URLs
            move their task files and bundles to and from it directly, never through a conductor

What lives here, by key (history and the agent's messages carry keys and sha256s, never host paths):

    <sha256>                                      a ticket's whole description (content-addressed text)
    jobs/<job id as a file name>/attempt-<n>/...  a staged attempt and the agent's bundle (stores/attempts.py)

Every read that has a sha256 to hold it to checks it: a truncated or replaced blob is refused with
BlobIntegrityError, never used.
"""

import hashlib
import os
import re
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from stores.job_store import sha256_file, write_atomic

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
CHUNK_SIZE = 1 << 20


class BlobMissing(LookupError):
    """No blob under that key."""


class BlobIntegrityError(ValueError):
    """The blob's bytes are not the ones its sha256 (or size) names."""


@dataclass(frozen=True)
class PresignedPost:
    """An S3 presigned POST: the form fields go with the file, and S3 refuses a body past the policy's
    content-length-range (so an agent can't store more than the bundle limit)."""

    url: str
    fields: dict[str, str] = field(default_factory=dict)


def check_key(key: str) -> str:
    """A relative, normalised key: no empty, `.` or `..` part, no leading slash."""
    parts = key.split("/")
    if any(part in ("", ".", "..") for part in parts) or "\\" in key:
        raise ValueError(f"not a blob key: {key!r}")
    return key


class BlobStore(ABC):
    name: str
    # Each lookup is a network request (worth caching what may be cached).
    remote: bool = False

    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> str:
        """Store `data` (replacing what was there); returns its sha256."""

    @abstractmethod
    def put_file(self, key: str, path: Path) -> str:
        """Store the file's bytes; returns their sha256."""

    @abstractmethod
    def size(self, key: str) -> int | None:
        """The blob's size, or None when there is none."""

    @abstractmethod
    def chunks(self, key: str) -> Iterator[bytes]:
        """The blob's bytes in chunks; BlobMissing when there is none."""

    @abstractmethod
    def delete(self, key: str) -> None: ...

    @abstractmethod
    def keys(self, prefix: str) -> list[str]:
        """The keys under `prefix` (ending in "/"), sorted."""

    def presigned_get(self, key: str, expires_seconds: int) -> str:
        """A URL an agent can GET the blob from; empty when this store has none (the gateway streams)."""
        return ""

    def presigned_post(self, key: str, max_bytes: int, expires_seconds: int) -> PresignedPost | None:
        """Where an agent can POST a blob of at most `max_bytes` directly; None: it goes through the gateway."""
        return None

    # Derived operations, the same for every backend --------------------------------------------

    def get_bytes(self, key: str, sha256: str = "", max_bytes: int | None = None) -> bytes:
        data = bytearray()
        for chunk in self.chunks(key):
            data += chunk
            if max_bytes is not None and len(data) > max_bytes:
                raise BlobIntegrityError(f"blob {key} is larger than {max_bytes} bytes")
        if sha256 and hashlib.sha256(data).hexdigest() != sha256:
            raise BlobIntegrityError(f"blob {key}: its bytes do not match sha256 {sha256}")
        return bytes(data)

    def download(self, key: str, dest: Path, sha256: str, max_bytes: int) -> Path:
        """Copy the blob to `dest`, checked against `sha256` and `max_bytes`; nothing is left at `dest`
        when it does not match."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        digest, size = hashlib.sha256(), 0
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in self.chunks(key):
                    size += len(chunk)
                    if size > max_bytes:
                        raise BlobIntegrityError(f"blob {key} is larger than the limit of {max_bytes} bytes")
                    digest.update(chunk)
                    out.write(chunk)
            if digest.hexdigest() != sha256:
                raise BlobIntegrityError(
                    f"blob {key}: its {size} bytes have sha256 {digest.hexdigest()}, not {sha256}"
                )
            os.replace(tmp, dest)
            return dest
        finally:
            Path(tmp).unlink(missing_ok=True)

    # Content-addressed text (a ticket's whole description) ------------------------------------

    def put_text(self, text: str) -> str:
        data = text.encode()
        digest = hashlib.sha256(data).hexdigest()
        if self.size(digest) != len(data):
            self.put_bytes(digest, data)
        return digest

    def get_text(self, digest: str) -> str | None:
        """The text, or None when it is not here, not whole, or the reference is not a sha256."""
        if not _SHA256.match(digest):
            return None
        try:
            return self.get_bytes(digest, sha256=digest).decode()
        except (BlobMissing, BlobIntegrityError):
            return None


class LocalBlobStore(BlobStore):
    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*PurePosixPath(check_key(key)).parts)

    def put_bytes(self, key: str, data: bytes) -> str:
        write_atomic(self._path(key), data)
        return hashlib.sha256(data).hexdigest()

    def put_file(self, key: str, path: Path) -> str:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        digest = hashlib.sha256()
        try:
            # Hashed as it is copied: one read of the file, not two.
            with os.fdopen(fd, "wb") as out, path.open("rb") as source:
                while chunk := source.read(CHUNK_SIZE):
                    digest.update(chunk)
                    out.write(chunk)
            os.replace(tmp, target)
        finally:
            Path(tmp).unlink(missing_ok=True)
        return digest.hexdigest()

    def size(self, key: str) -> int | None:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            return None

    def chunks(self, key: str) -> Iterator[bytes]:
        try:
            f = self._path(key).open("rb")
        except FileNotFoundError:
            raise BlobMissing(f"no blob {key} in {self.root}") from None
        with f:
            while chunk := f.read(CHUNK_SIZE):
                yield chunk

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def keys(self, prefix: str) -> list[str]:
        folder = self._path(prefix.rstrip("/"))
        if not folder.is_dir():
            return []
        return sorted(
            prefix + path.relative_to(folder).as_posix()
            for path in folder.rglob("*")
            if path.is_file() and not path.name.startswith(".")  # a write in progress
        )


class S3BlobStore(BlobStore):
    name = "s3"
    remote = True

    def __init__(self, s3, bucket: str, prefix: str = "blobs/") -> None:
        self._s3 = s3
        self._bucket = bucket
        self._prefix = prefix

    def _key(self, key: str) -> str:
        return self._prefix + check_key(key)

    def put_bytes(self, key: str, data: bytes) -> str:
        self._s3.put_object(Bucket=self._bucket, Key=self._key(key), Body=data)
        return hashlib.sha256(data).hexdigest()

    def put_file(self, key: str, path: Path) -> str:
        # upload_file: multipart for big files, in parallel parts, retried part by part.
        self._s3.upload_file(str(path), self._bucket, self._key(key))
        return sha256_file(path)

    def size(self, key: str) -> int | None:
        try:
            return int(self._s3.head_object(Bucket=self._bucket, Key=self._key(key))["ContentLength"])
        except self._s3.exceptions.ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def chunks(self, key: str) -> Iterator[bytes]:
        try:
            body = self._s3.get_object(Bucket=self._bucket, Key=self._key(key))["Body"]
        except self._s3.exceptions.NoSuchKey:
            raise BlobMissing(f"no blob {key} in s3://{self._bucket}/{self._prefix}") from None
        with body:
            yield from body.iter_chunks(CHUNK_SIZE)

    def delete(self, key: str) -> None:
        self._s3.delete_object(Bucket=self._bucket, Key=self._key(key))

    def keys(self, prefix: str) -> list[str]:
        found = []
        pages = self._s3.get_paginator("list_objects_v2").paginate(
            Bucket=self._bucket, Prefix=self._key(prefix.rstrip("/")) + "/"
        )
        for page in pages:
            found += [item["Key"][len(self._prefix) :] for item in page.get("Contents", [])]
        return sorted(found)

    def presigned_get(self, key: str, expires_seconds: int) -> str:
        return self._s3.generate_presigned_url(
            "get_object", Params={"Bucket": self._bucket, "Key": self._key(key)}, ExpiresIn=expires_seconds
        )

    def presigned_post(self, key: str, max_bytes: int, expires_seconds: int) -> PresignedPost:
        post = self._s3.generate_presigned_post(
            self._bucket,
            self._key(key),
            Conditions=[["content-length-range", 0, max_bytes]],
            ExpiresIn=expires_seconds,
        )
        return PresignedPost(url=post["url"], fields=dict(post["fields"]))


def open_blob_store(
    kind: str,
    root: Path,
    *,
    bucket: str = "",
    prefix: str = "blobs/",
    region: str = "",
    endpoint_url: str = "",
) -> BlobStore:
    """The store a conductor's settings name (conductor_worker/config.py: CONDUCTOR_BLOB_STORE ...)."""
    if kind == "s3":
        import boto3

        if not bucket:
            raise ValueError("CONDUCTOR_BLOB_STORE=s3 needs CONDUCTOR_BLOB_S3_BUCKET")
        s3 = boto3.client("s3", region_name=region or None, endpoint_url=endpoint_url or None)
        return S3BlobStore(s3, bucket, prefix)
    return LocalBlobStore(root)
