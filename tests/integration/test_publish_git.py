"""The `local` publisher against real bare repositories, with the real git CLI."""

import base64
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.git_push import GitCommandError, basic_auth_header_config, push_bundle_branch
from activities.publish_git import LocalGitPublisher
from contracts.activity_io import PublishInput
from contracts.jobs import AgentResult, AgentStatus, JobSpec, ticket_work_item
from contracts.routing import RepoRoute
from contracts.tickets import TicketMessage
from stores.blob_store import LocalBlobStore
from tests.git_helpers import make_bare_repo_from, make_branch_bundle, rev_parse, stored_bundle

BRANCH = "conductor/ENG-123"
REF = f"refs/heads/{BRANCH}"


@pytest.fixture
def bare(tmp_path: Path) -> Path:
    return make_bare_repo_from({"README.md": "hello\n"}, tmp_path / "origin.git")


@pytest.fixture(autouse=True)
def blob_store(tmp_path: Path) -> None:
    """The conductor's blob store, where the gateway put the agent's bundle."""
    global BLOBS
    BLOBS = LocalBlobStore(tmp_path / "blobs")


def publish_input(repo_url: str, bundle: Path | None, sha: str = "") -> PublishInput:
    spec = JobSpec(
        job_id="job/ticket/jira/ENG-123",
        work=ticket_work_item(TicketMessage(key="ENG-123", summary="Fix the login page")),
        route=RepoRoute(repo_url=repo_url, publisher="local"),
        branch=BRANCH,
    )
    result = AgentResult(
        status=AgentStatus.SUCCEEDED, **stored_bundle(BLOBS, bundle), commit_sha=sha, branch=BRANCH
    )
    return PublishInput(spec=spec, result=result)


async def publish(input: PublishInput):
    return await ActivityEnvironment().run(LocalGitPublisher(BLOBS).publish_local, input)


async def test_pushes_the_branch_into_the_bare_repo(bare: Path, tmp_path: Path):
    bundle, sha = make_branch_bundle(bare, tmp_path / "agent", BRANCH, {"fix.txt": "fixed\n"})

    result = await publish(publish_input(str(bare), bundle, sha))

    assert result.branch == BRANCH
    assert result.commit_sha == sha
    assert result.pr_url is None
    assert rev_parse(bare, REF) == sha


async def test_file_url_remote_works(bare: Path, tmp_path: Path):
    bundle, sha = make_branch_bundle(bare, tmp_path / "agent", BRANCH, {"fix.txt": "fixed\n"})

    await publish(publish_input(bare.as_uri(), bundle, sha))

    assert rev_parse(bare, REF) == sha


async def test_publishing_twice_is_fine(bare: Path, tmp_path: Path):
    bundle, sha = make_branch_bundle(bare, tmp_path / "agent", BRANCH, {"fix.txt": "fixed\n"})

    first = await publish(publish_input(str(bare), bundle, sha))
    second = await publish(publish_input(str(bare), bundle, sha))

    assert first == second
    assert rev_parse(bare, REF) == sha


async def test_a_retry_with_a_new_commit_replaces_the_branch(bare: Path, tmp_path: Path):
    old, old_sha = make_branch_bundle(bare, tmp_path / "try1", BRANCH, {"fix.txt": "first\n"})
    await publish(publish_input(str(bare), old, old_sha))
    # The retry starts again from main: its commit is a sibling, so only a forced push lands it.
    new, new_sha = make_branch_bundle(bare, tmp_path / "try2", BRANCH, {"fix.txt": "second\n"})

    result = await publish(publish_input(str(bare), new, new_sha))

    assert result.commit_sha == new_sha != old_sha
    assert rev_parse(bare, REF) == new_sha


async def test_no_bundle_is_nothing_to_publish(bare: Path):
    with pytest.raises(ApplicationError) as caught:
        await publish(publish_input(str(bare), None))

    assert caught.value.type == "NothingToPublish"
    assert caught.value.non_retryable
    assert "nothing to publish" in caught.value.message
    assert rev_parse(bare, REF) is None


async def test_bundle_not_holding_the_reported_commit_is_refused(bare: Path, tmp_path: Path):
    bundle, _ = make_branch_bundle(bare, tmp_path / "agent", BRANCH, {"fix.txt": "fixed\n"})

    with pytest.raises(ApplicationError) as caught:
        await publish(publish_input(str(bare), bundle, "0" * 40))

    assert caught.value.type == "InvalidBundle"
    assert caught.value.non_retryable
    assert rev_parse(bare, REF) is None


async def test_corrupt_bundle_is_not_retried(bare: Path, tmp_path: Path):
    bundle = tmp_path / "broken.bundle"
    bundle.write_text("not a bundle\n")

    with pytest.raises(ApplicationError) as caught:
        await publish(publish_input(str(bare), bundle))

    assert caught.value.type == "InvalidBundle"
    assert caught.value.non_retryable
    assert "git bundle verify" in caught.value.message


def test_git_errors_name_the_command_and_hide_secrets(bare: Path, tmp_path: Path):
    bundle, _ = make_branch_bundle(bare, tmp_path / "agent", BRANCH, {"fix.txt": "fixed\n"})
    remote = "http://x-access-token:url-s3cret@127.0.0.1:9/acme/widgets.git"

    with pytest.raises(GitCommandError) as caught:
        push_bundle_branch(
            bundle,
            BRANCH,
            remote,
            "main",
            {"http.extraHeader": "Authorization: Basic aGVhZGVyLXMzY3JldA=="},
        )

    message = str(caught.value)
    assert "git fetch" in message
    assert "s3cret" not in message
    assert "aGVhZGVyLXMzY3JldA==" not in message


def test_secret_echoed_by_git_is_redacted(bare: Path, tmp_path: Path):
    bundle, _ = make_branch_bundle(bare, tmp_path / "agent", BRANCH, {"fix.txt": "fixed\n"})

    # git quotes an invalid config value in its error: the redaction must catch it there too.
    with pytest.raises(GitCommandError) as caught:
        push_bundle_branch(bundle, BRANCH, str(bare), "main", {"core.bare": "not-a-bool-s3cret"})

    assert "***" in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_the_auth_header_reaches_an_https_style_remote(bare: Path, tmp_path: Path):
    bundle, _ = make_branch_bundle(bare, tmp_path / "agent", BRANCH, {"fix.txt": "fixed\n"})
    seen: list[str | None] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # git's smart-HTTP discovery; a 404 ends the fetch
            seen.append(self.headers.get("Authorization"))
            self.send_error(404)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        remote = f"http://127.0.0.1:{server.server_address[1]}/acme/widgets.git"
        with pytest.raises(GitCommandError) as caught:
            push_bundle_branch(bundle, BRANCH, remote, "main", basic_auth_header_config("tok3n"))
    finally:
        server.shutdown()
        server.server_close()

    expected = base64.b64encode(b"x-access-token:tok3n").decode()
    assert seen and seen[0] == f"Basic {expected}"
    assert expected not in str(caught.value)
