"""The `github` publisher: real git pushes to a bare repo, PyGithub against the GitHub stand-in."""

from collections.abc import Iterator
from pathlib import Path

import github
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.pr_text import BODY_LIMIT
from activities.publish_github import GithubPublisher
from contracts.activity_io import PublishInput, PublishResult
from contracts.jobs import AgentResult, AgentStatus, JobSpec, ticket_work_item
from contracts.routing import RepoRoute
from contracts.tickets import TicketMessage
from stores.blob_store import LocalBlobStore
from tests.git_helpers import make_bare_repo_from, make_branch_bundle, rev_parse, stored_bundle
from tests.github_standin import GithubStandin

BRANCH = "conductor/ENG-123"
REPO = "acme/widgets"
JOB_ID = "job/ticket/jira/ENG-123"


@pytest.fixture
def standin() -> Iterator[GithubStandin]:
    with GithubStandin(token="t", repos=[REPO]) as gh:
        yield gh


@pytest.fixture
def bare(tmp_path: Path) -> Path:
    return make_bare_repo_from({"README.md": "hello\n"}, tmp_path / "origin.git")


@pytest.fixture(autouse=True)
def blob_store(tmp_path: Path) -> None:
    """The conductor's blob store, where the gateway put the agent's bundle."""
    global BLOBS
    BLOBS = LocalBlobStore(tmp_path / "blobs")


def publish_input(bare: Path, bundle: Path, sha: str, summary: str, github_repo=REPO):
    spec = JobSpec(
        job_id=JOB_ID,
        work=ticket_work_item(
            TicketMessage(
                key="ENG-123", summary="Fix the login page", url="https://jira.example.com/browse/ENG-123"
            )
        ),
        route=RepoRoute(repo_url=bare.as_uri(), publisher="github", github_repo=github_repo),
        branch=BRANCH,
    )
    result = AgentResult(
        status=AgentStatus.SUCCEEDED, **stored_bundle(BLOBS, bundle), commit_sha=sha, summary=summary
    )
    return PublishInput(spec=spec, result=result)


async def publish(standin: GithubStandin, input: PublishInput, token: str = "t") -> PublishResult:
    def factory() -> github.Github:
        # PyGithub spaces requests out (0.25 s, 1 s per write) to spare GitHub; not needed here.
        return github.Github(
            base_url=standin.base_url,
            auth=github.Auth.Token(token),
            seconds_between_requests=None,
            seconds_between_writes=None,
        )

    publisher = GithubPublisher(factory, token=token, blobs=BLOBS)
    return await ActivityEnvironment().run(publisher.publish_github, input)


async def test_first_run_pushes_the_branch_and_opens_a_pull_request(standin, bare, tmp_path):
    bundle, sha = make_branch_bundle(bare, tmp_path / "agent", BRANCH, {"fix.txt": "fixed\n"})

    result = await publish(standin, publish_input(bare, bundle, sha, "Fixed validation."))

    assert rev_parse(bare, f"refs/heads/{BRANCH}") == sha
    assert result == PublishResult(
        branch=BRANCH,
        commit_sha=sha,
        pr_number=1,
        pr_url=f"{standin.base_url}/{REPO}/pull/1",
    )
    [pr] = standin.pulls(REPO)
    assert pr["head"]["label"] == f"acme:{BRANCH}"
    assert pr["base"]["ref"] == "main"
    assert pr["title"] == "ENG-123: Fix the login page"
    assert "[ENG-123](https://jira.example.com/browse/ENG-123)" in pr["body"]
    assert "Fixed validation." in pr["body"]
    assert f"Opened by Agent Conductor for job {JOB_ID}" in pr["body"]
    [listed] = standin.calls_to("GET", f"/repos/{REPO}/pulls")
    assert listed.query == {"state": "open", "head": f"acme:{BRANCH}"}


async def test_a_retry_updates_the_same_pull_request(standin, bare, tmp_path):
    old, old_sha = make_branch_bundle(bare, tmp_path / "try1", BRANCH, {"fix.txt": "first\n"})
    await publish(standin, publish_input(bare, old, old_sha, "First attempt."))
    new, new_sha = make_branch_bundle(bare, tmp_path / "try2", BRANCH, {"fix.txt": "second\n"})

    result = await publish(standin, publish_input(bare, new, new_sha, "Second attempt."))

    assert result.pr_number == 1
    assert result.commit_sha == new_sha
    assert rev_parse(bare, f"refs/heads/{BRANCH}") == new_sha
    [pr] = standin.pulls(REPO)
    assert "Second attempt." in pr["body"]
    assert "First attempt." not in pr["body"]
    assert len(standin.calls_to("POST", "/pulls")) == 1
    assert len(standin.calls_to("PATCH", "/pulls/1")) == 1


async def test_a_pull_request_the_list_does_not_show_yet_is_edited(standin, bare, tmp_path):
    seeded = standin.add_pull(REPO, head=BRANCH, title="old title", body="old body")
    standin.hide_pulls_from_list(times=1)
    bundle, sha = make_branch_bundle(bare, tmp_path / "agent", BRANCH, {"fix.txt": "fixed\n"})

    result = await publish(standin, publish_input(bare, bundle, sha, "Recovered."))

    assert result.pr_number == seeded["number"]
    [pr] = standin.pulls(REPO)
    assert pr["title"] == "ENG-123: Fix the login page"
    assert "Recovered." in pr["body"]
    # list (hidden) -> create (422, already exists) -> list again -> edit
    assert len(standin.calls_to("GET", f"/repos/{REPO}/pulls")) == 2
    assert len(standin.calls_to("POST", "/pulls")) == 1
    assert len(standin.calls_to("PATCH", f"/pulls/{seeded['number']}")) == 1


async def test_an_unchanged_pull_request_is_not_edited(standin, bare, tmp_path):
    bundle, sha = make_branch_bundle(bare, tmp_path / "agent", BRANCH, {"fix.txt": "fixed\n"})
    input = publish_input(bare, bundle, sha, "Same.")

    first = await publish(standin, input)
    second = await publish(standin, input)

    assert first == second
    assert standin.calls_to("PATCH") == []


async def test_a_huge_summary_still_opens_a_pull_request(standin, bare, tmp_path):
    bundle, sha = make_branch_bundle(bare, tmp_path / "agent", BRANCH, {"fix.txt": "fixed\n"})

    await publish(standin, publish_input(bare, bundle, sha, "x" * (BODY_LIMIT + 10_000)))

    [pr] = standin.pulls(REPO)
    assert len(pr["body"]) <= BODY_LIMIT
    assert "truncated by Agent Conductor" in pr["body"]


async def test_a_wrong_token_fails_readably_and_is_not_retried(standin, bare, tmp_path):
    bundle, sha = make_branch_bundle(bare, tmp_path / "agent", BRANCH, {"fix.txt": "fixed\n"})

    with pytest.raises(ApplicationError) as caught:
        await publish(standin, publish_input(bare, bundle, sha, "x"), token="wrong")

    assert caught.value.non_retryable
    assert caught.value.message == (f"GitHub rejected the credentials for {REPO} (401 Bad credentials)")
    assert "wrong" not in caught.value.message
    assert standin.pulls(REPO) == []


async def test_an_unknown_repository_is_not_retried(standin, bare, tmp_path):
    bundle, sha = make_branch_bundle(bare, tmp_path / "agent", BRANCH, {"fix.txt": "fixed\n"})

    with pytest.raises(ApplicationError) as caught:
        await publish(standin, publish_input(bare, bundle, sha, "x", github_repo="acme/nope"))

    assert caught.value.non_retryable
    assert "could not find the repository" in caught.value.message
    assert "404" in caught.value.message


async def test_a_route_without_github_repo_is_refused(standin, bare, tmp_path):
    bundle, sha = make_branch_bundle(bare, tmp_path / "agent", BRANCH, {"fix.txt": "fixed\n"})

    with pytest.raises(ApplicationError) as caught:
        await publish(standin, publish_input(bare, bundle, sha, "x", github_repo=None))

    assert caught.value.non_retryable
    assert caught.value.message == (f"route for {bare.as_uri()} has publisher github but no github_repo")
    assert rev_parse(bare, f"refs/heads/{BRANCH}") is None


async def test_a_pull_request_that_stays_unlisted_is_retried_later(standin, bare, tmp_path):
    standin.add_pull(REPO, head=BRANCH, title="old title", body="old body")
    standin.hide_pulls_from_list(times=2)
    bundle, sha = make_branch_bundle(bare, tmp_path / "agent", BRANCH, {"fix.txt": "fixed\n"})

    with pytest.raises(ApplicationError) as caught:
        await publish(standin, publish_input(bare, bundle, sha, "x"))

    assert caught.value.type == "PullRequestNotVisible"
    assert not caught.value.non_retryable
    assert len(standin.pulls(REPO)) == 1
