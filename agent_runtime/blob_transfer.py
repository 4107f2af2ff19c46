"""Task files and bundles moved straight to and from the blob store, with the presigned URLs the gateway
gives (the conductor's `s3` blob store): bulk bytes never pass through a conductor.

Every byte written is checked against the size and sha256 the gateway announced, whichever way it came.
urllib3 and httpx are imported only when a URL is used: the per-job agent on the `local` store never pays for
them.
"""

import hashlib
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

CHUNK_BYTES = 1 << 20


class TaskFileIntegrityError(Exception):
    """A downloaded task file does not match the size or sha256 the handshake announced."""


class BlobTransferError(Exception):
    """The blob store did not take or give the bytes (an HTTP error, or no answer); worth another try."""


def write_checked(dest: Path, chunks: Iterable[bytes], size: int, sha256: str, name: str) -> Path:
    """Write `chunks` to `dest` if they are exactly `size` bytes with this sha256; else nothing is left."""
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        digest, got = hashlib.sha256(), 0
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                got += len(chunk)
                if got > size:
                    raise TaskFileIntegrityError(f"{name}: more than the announced {size} bytes")
                digest.update(chunk)
                out.write(chunk)
        if got != size:
            raise TaskFileIntegrityError(f"{name}: got {got} bytes, expected {size}")
        if digest.hexdigest() != sha256.lower():
            raise TaskFileIntegrityError(f"{name}: sha256 does not match the handshake")
        os.replace(tmp, dest)
        return dest
    finally:
        tmp.unlink(missing_ok=True)


def download_url(url: str, dest: Path, size: int, sha256: str, name: str, timeout: float) -> Path:
    # urllib3 (botocore's HTTP client), not httpx: reading a 100 MB body from moto's S3 it ran at 2-3 x
    # httpx's rate here, which read it in 64 KiB pieces through h11 (benchmarks/blob_bench.py).
    import urllib3

    try:
        response = urllib3.request(
            "GET",
            url,
            preload_content=False,
            retries=False,
            timeout=urllib3.Timeout(connect=timeout, read=timeout),
        )
        with response:
            if response.status != 200:
                raise BlobTransferError(
                    f"{name}: the blob store answered {response.status}: {response.read(300)!r}"
                )
            return write_checked(dest, response.stream(CHUNK_BYTES), size, sha256, name)
    except urllib3.exceptions.HTTPError as err:
        raise BlobTransferError(f"{name}: no answer from the blob store: {err}") from err


def post_file(url: str, fields: Mapping[str, str], path: Path, timeout: float) -> None:
    """A presigned S3 POST of the file: the policy's fields, then the file (streamed, last, as S3 wants)."""
    import httpx

    try:
        with path.open("rb") as body:
            response = httpx.post(
                url,
                data=dict(fields),
                files={"file": (path.name, body, "application/octet-stream")},
                timeout=timeout,
            )
    except httpx.TransportError as err:
        raise BlobTransferError(f"upload of {path.name}: no answer from the blob store: {err}") from err
    if response.status_code not in (200, 201, 204):
        raise BlobTransferError(
            f"upload of {path.name}: the blob store answered {response.status_code}: {response.text[:300]}"
        )


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(CHUNK_BYTES):
            digest.update(block)
    return digest.hexdigest()
