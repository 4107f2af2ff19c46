"""The `local` publisher: push the agent's branch into a local bare repository (no pull request)."""

from functools import partial
from pathlib import Path

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.git_push import BundleError, push_bundle_branch
from activities.heartbeats import in_thread_with_heartbeats
from contracts.activity_io import PublishInput, PublishResult

DEFAULT_MAX_BUNDLE_BYTES = 512 * 2**20


class LocalGitPublisher:
    def __init__(self, max_bundle_bytes: int = DEFAULT_MAX_BUNDLE_BYTES) -> None:
        self._max_bundle_bytes = max_bundle_bytes

    @activity.defn(name="publish_local")
    async def publish_local(self, input: PublishInput) -> PublishResult:
        spec = input.spec
        sha = await push_agent_branch(input, max_bundle_bytes=self._max_bundle_bytes)
        activity.logger.info("pushed %s at %s to %s", spec.branch, sha, spec.route.repo_url)
        return PublishResult(branch=spec.branch, commit_sha=sha)


async def push_agent_branch(
    input: PublishInput,
    extra_git_config: dict[str, str] | None = None,
    max_bundle_bytes: int = DEFAULT_MAX_BUNDLE_BYTES,
) -> str:
    """Push the bundle's branch to the route's repository; shared by both publishers.

    Raises non-retryable errors for what a retry cannot fix: no bundle, or a bundle that is
    corrupt, lacks the branch, or does not hold the commit the agent reported.
    """
    spec, result = input.spec, input.result
    if not result.bundle_path:
        raise ApplicationError(
            f"job {spec.job_id} has nothing to publish: the agent reported no change "
            f"(no bundle), so branch {spec.branch} was not pushed",
            type="NothingToPublish",
            non_retryable=True,
        )
    bundle = Path(result.bundle_path)
    if not bundle.is_file():
        # Retryable: the workflow may route the retry to the conductor process that holds the file.
        raise ApplicationError(
            f"bundle {bundle} for job {spec.job_id} is not on this conductor's disk",
            type="BundleMissing",
        )
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
