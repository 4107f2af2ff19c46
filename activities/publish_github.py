"""The `github` publisher: push the agent's branch, then open its pull request or update it.

The PR's head branch comes from the ticket (`contracts.ids.ticket_branch`), so it is the idempotency
key: a retried job finds the PR its earlier attempt opened instead of opening a second one.
"""

from collections.abc import Callable
from dataclasses import dataclass

import github
from github.GithubException import GithubException, RateLimitExceededException
from github.PullRequest import PullRequest
from github.Repository import Repository
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.git_push import basic_auth_header_config
from activities.heartbeats import in_thread_with_heartbeats
from activities.pr_text import pr_body, pr_title
from activities.publish_git import DEFAULT_MAX_BUNDLE_BYTES, push_agent_branch
from contracts.activity_io import PublishInput, PublishResult
from stores.blob_store import BlobStore

# Retrying cannot fix a bad token, a missing permission or a wrong repository name.
_NOT_RETRYABLE = {
    401: "rejected the credentials",
    403: "refused access",
    404: "could not find the repository (or the token cannot see it)",
}


@dataclass(frozen=True)
class _PullRequest:
    number: int
    html_url: str


class GithubPublisher:
    def __init__(
        self,
        github_factory: Callable[[], github.Github],
        token: str,
        blobs: BlobStore,
        max_bundle_bytes: int = DEFAULT_MAX_BUNDLE_BYTES,
    ) -> None:
        self._github_factory = github_factory
        self._blobs = blobs
        self._token = token
        self._max_bundle_bytes = max_bundle_bytes

    @activity.defn(name="publish_github")
    async def publish_github(self, input: PublishInput) -> PublishResult:
        spec = input.spec
        repo_name = spec.route.github_repo
        if not repo_name:
            raise ApplicationError(
                f"route for {spec.route.repo_url} has publisher github but no github_repo",
                type="RouteMisconfigured",
                non_retryable=True,
            )
        auth = basic_auth_header_config(self._token) if self._token else None
        sha = await push_agent_branch(input, self._blobs, auth, self._max_bundle_bytes)
        title = pr_title(spec.work)
        body = pr_body(spec.work, spec.job_id, input.result.summary, repo=repo_name)
        try:
            pr = await in_thread_with_heartbeats(
                self._open_or_update, repo_name, spec.branch, spec.route.base_branch, title, body
            )
        except GithubException as e:
            raise _readable(e, repo_name) from e
        activity.logger.info("pushed %s at %s; pull request %s", spec.branch, sha, pr.html_url)
        return PublishResult(branch=spec.branch, commit_sha=sha, pr_url=pr.html_url, pr_number=pr.number)

    def _open_or_update(self, repo_name: str, branch: str, base: str, title: str, body: str) -> _PullRequest:
        # Runs in a worker thread (PyGithub blocks); a fresh client per call keeps threads apart.
        gh = self._github_factory()
        try:
            repo = gh.get_repo(repo_name)
            head = f"{repo_name.split('/')[0]}:{branch}"
            pr = _find_open(repo, head)
            if pr is None:
                try:
                    pr = repo.create_pull(base=base, head=branch, title=title, body=body)
                    return _PullRequest(pr.number, pr.html_url)
                except GithubException as e:
                    if not _already_exists(e):
                        raise
                # A previous or concurrent attempt created it, but the list did not show it yet.
                pr = _find_open(repo, head)
                if pr is None:
                    raise ApplicationError(
                        f"GitHub says a pull request for {head} exists, but does not list it yet",
                        type="PullRequestNotVisible",
                    ) from None
            if pr.title != title or pr.body != body:
                pr.edit(title=title, body=body)
            return _PullRequest(pr.number, pr.html_url)
        finally:
            gh.close()


def _find_open(repo: Repository, head: str) -> PullRequest | None:
    return next(iter(repo.get_pulls(state="open", head=head)), None)


def _already_exists(e: GithubException) -> bool:
    if e.status != 422 or not isinstance(e.data, dict):
        return False
    return any("pull request already exists" in m.lower() for m in _error_messages(e.data))


def _readable(e: GithubException, repo_name: str) -> ApplicationError:
    data = e.data if isinstance(e.data, dict) else {}
    detail = " ".join([str(e.status), data.get("message", ""), *_error_messages(data)]).strip()
    if e.status in _NOT_RETRYABLE and not isinstance(e, RateLimitExceededException):
        return ApplicationError(
            f"GitHub {_NOT_RETRYABLE[e.status]} for {repo_name} ({detail})",
            type=f"GithubHttp{e.status}",
            non_retryable=True,
        )
    return ApplicationError(f"GitHub call for {repo_name} failed ({detail})", type="GithubError")


def _error_messages(data: dict) -> list[str]:
    # GitHub's `errors` entries are objects with a `message`, or sometimes bare strings.
    errors = data.get("errors") or []
    return [err.get("message", "") if isinstance(err, dict) else str(err) for err in errors]
