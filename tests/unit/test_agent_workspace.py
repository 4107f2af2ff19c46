"""Real git: the agent's bundle of its branch can be fetched into a fresh clone of the remote."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from agent_runtime.coding_agents.demo import run_demo_agent
from agent_runtime.workspace import GIT_ENV, RemoteUnreachable, clone
from contracts.jobs import TaskInstructions

SAMPLE_REPO = Path(__file__).resolve().parents[2] / "examples" / "sample-repo"
BRANCH = "conductor/ENG-123"
PROMPT = "# ENG-123: Login fails after session timeout\n\nUsers see a blank page.\n"


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(
        ["git", *args],
        cwd=cwd,
        env={**os.environ, **GIT_ENV},
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    """A bare repository holding the sample repo on `main`: the agent's 'remote'."""
    src = tmp_path / "src"
    shutil.copytree(SAMPLE_REPO, src, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    git("init", "--quiet", "--initial-branch=main", cwd=src)
    git("add", "--all", cwd=src)
    git("-c", "commit.gpgsign=false", "commit", "--quiet", "-m", "sample repo", cwd=src)
    bare = tmp_path / "remote.git"
    git("init", "--quiet", "--bare", "--initial-branch=main", str(bare))
    git("push", "--quiet", str(bare), "main:main", cwd=src)
    return bare


def instructions_for(remote: Path) -> TaskInstructions:
    return TaskInstructions(
        job_id="job/ticket/jira/ENG-123",
        ticket_key="ENG-123",
        repo_url=str(remote),
        base_branch="main",
        branch=BRANCH,
        commit_message="ENG-123: Login fails after session timeout\n\nBy the demo agent.",
    )


def test_bundle_fetches_into_a_fresh_clone_of_the_remote(remote: Path, tmp_path: Path):
    instructions = instructions_for(remote)
    workspace = clone(str(remote), "main", tmp_path / "work")
    workspace.create_branch(BRANCH)
    run_demo_agent(workspace.path, instructions.ticket_key, instructions.commit_message, PROMPT)
    sha = workspace.commit_all(instructions.commit_message)
    assert sha is not None and workspace.commits_ahead("main") == 1
    bundle = workspace.create_bundle(tmp_path / "work.bundle", "main", BRANCH)

    fresh = tmp_path / "fresh"
    git("clone", "--quiet", "--branch", "main", str(remote), str(fresh))
    # Only the agent's commit is in the bundle: it needs main's tip from the remote.
    main_sha = git("rev-parse", "main", cwd=fresh)
    assert main_sha in git("bundle", "verify", str(bundle), cwd=fresh)
    git("fetch", "--quiet", str(bundle), f"refs/heads/{BRANCH}:refs/heads/{BRANCH}", cwd=fresh)

    assert git("rev-parse", BRANCH, cwd=fresh) == sha
    changed = git("diff", "--name-only", "main", BRANCH, cwd=fresh).splitlines()
    assert sorted(changed) == ["CHANGELOG.md", "docs/tickets/ENG-123.md"]
    assert git("log", "-1", "--format=%an <%ae>", BRANCH, cwd=fresh) == (
        "Conductor Agent <agent@conductor.invalid>"
    )


def test_demo_agent_is_deterministic(remote: Path, tmp_path: Path):
    instructions = instructions_for(remote)
    trees = []
    for name in ("one", "two"):
        workspace = clone(str(remote), "main", tmp_path / name)
        run_demo_agent(workspace.path, instructions.ticket_key, instructions.commit_message, PROMPT)
        trees.append(
            {rel: (workspace.path / rel).read_text() for rel in ("CHANGELOG.md", "docs/tickets/ENG-123.md")}
        )

    assert trees[0] == trees[1]
    assert trees[0]["CHANGELOG.md"] == (
        "# Changelog\n\n## Unreleased\n\n- ENG-123: Login fails after session timeout\n"
    )
    assert trees[0]["docs/tickets/ENG-123.md"] == PROMPT


def test_demo_agent_creates_a_missing_changelog_and_keeps_later_sections(tmp_path: Path):
    instructions = instructions_for(tmp_path)
    run_demo_agent(tmp_path, instructions.ticket_key, instructions.commit_message, "prompt")
    assert (tmp_path / "CHANGELOG.md").read_text() == (
        "# Changelog\n\n## Unreleased\n\n- ENG-123: Login fails after session timeout\n"
    )

    (tmp_path / "CHANGELOG.md").write_text(
        "# Changelog\n\n## Unreleased\n\n- ENG-1: older\n\n## 1.0.0\n\n- first\n"
    )
    run_demo_agent(tmp_path, instructions.ticket_key, instructions.commit_message, "prompt")
    assert (tmp_path / "CHANGELOG.md").read_text() == (
        "# Changelog\n\n## Unreleased\n\n- ENG-1: older\n"
        "- ENG-123: Login fails after session timeout\n\n## 1.0.0\n\n- first\n"
    )


def test_commit_all_without_changes_returns_none(remote: Path, tmp_path: Path):
    workspace = clone(str(remote), "main", tmp_path / "work")
    assert workspace.commit_all("nothing") is None
    assert workspace.commits_ahead("main") == 0


@pytest.mark.parametrize("url", ["missing.git", "http://127.0.0.1:1/repo.git"])
def test_clone_of_an_unreachable_remote_is_a_network_failure(tmp_path: Path, url: str):
    if "://" not in url:
        url = str(tmp_path / url)
    with pytest.raises(RemoteUnreachable):
        clone(url, "main", tmp_path / "work")
