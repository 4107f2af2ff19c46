"""The `local` publisher: push the agent's branch into a local bare repository (no pull request)."""

import tempfile
from functools import partial
from pathlib import Path

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.git_push import BundleError, push_bundle_branch
from activities.heartbeats import in_thread_with_heartbeats
from contracts.activity_io import PublishInput, PublishResult
from stores.blob_store import BlobIntegrityError, BlobMissing, BlobStore

DEFAULT_MAX_BUNDLE_BYTES = 512 * 2**20


class LocalGitPublisher:
    def __init__(self, blobs: BlobStore, max_bundle_bytes: int = DEFAULT_MAX_BUNDLE_BYTES) -> None:
        self._blobs = blobs
        self._max_bundle_bytes = max_bundle_bytes

    @activity.defn(name="publish_local")
    async def publish_local(self, input: PublishInput) -> PublishResult:
        spec = input.spec
        sha = await push_agent_branch(input, self._blobs, max_bundle_bytes=self._max_bundle_bytes)
        activity.logger.info("pushed %s at %s to %s", spec.branch, sha, spec.route.repo_url)
        return PublishResult(branch=spec.branch, commit_sha=sha)


async def push_agent_branch(
    input: PublishInput,
    blobs: BlobStore,
    extra_git_config: dict[str, str] | None = None,
    max_bundle_bytes: int = DEFAULT_MAX_BUNDLE_BYTES,
) -> str:
    """Push the bundle's branch to the route's repository; shared by both publishers.

    The bundle comes from the blob store, checked against the sha256 the agent reported. Raises
    non-retryable errors for what a retry cannot fix: no bundle, or a bundle that does not match its
    sha256, is corrupt, lacks the branch, or does not hold the commit the agent reported.
    """
    spec, result = input.spec, input.result
    if not (result.bundle_key or result.bundle_path):
        raise ApplicationError(
            f"job {spec.job_id} has nothing to publish: the agent reported no change "
            f"(no bundle), so branch {spec.branch} was not pushed",
            type="NothingToPublish",
            non_retryable=True,
        )
    with tempfile.TemporaryDirectory(prefix="publish-") as scratch:
        bundle = await _fetch_bundle(input, blobs, Path(scratch) / "work.bundle", max_bundle_bytes)
        try:
            return await in_thread_with_heartbeats(
                partial(push_bundle_branch, max_bytes=max_bundle_bytes),
                bundle,
                spec.branch,
                spec.route.repo_url,
                spec.route.base_branch,
                extra_git_config,
                result.commit_sha,
            )
        except BundleError as e:
            raise ApplicationError(
                f"bundle for job {spec.job_id} is unusable: {e}",
                type="InvalidBundle",
                non_retryable=True,
            ) from e


async def _fetch_bundle(input: PublishInput, blobs: BlobStore, dest: Path, max_bytes: int) -> Path:
    spec, result = input.spec, input.result
    if not result.bundle_key:
        # Reported to a conductor from before the blob store, which kept it on its own disk.
        bundle = Path(result.bundle_path)
        if not bundle.is_file():
            raise ApplicationError(
                f"bundle {bundle} for job {spec.job_id} is not on this conductor's disk",
                type="BundleMissing",
            )
        return bundle
    try:
        return await in_thread_with_heartbeats(
            blobs.download, result.bundle_key, dest, result.bundle_sha256, max_bytes
        )
    except BlobMissing as e:
        # Retryable: a blob store that was briefly away (or a local store on another host) may have it.
        raise ApplicationError(
            f"bundle of job {spec.job_id} is not in the {blobs.name} blob store: {e}", type="BundleMissing"
        ) from e
    except BlobIntegrityError as e:
        raise ApplicationError(
            f"bundle of job {spec.job_id} refused: {e}", type="InvalidBundle", non_retryable=True
        ) from e
