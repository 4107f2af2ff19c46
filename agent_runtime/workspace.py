"""The job's git working copy, driven through the `git` CLI: clone, branch, commit, bundle."""

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

# Identity through the environment, so the agent needs no global git config; and never prompt for a
# password: a clone that needs credentials must fail, not hang the job.
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Conductor Agent",
    "GIT_AUTHOR_EMAIL": "agent@conductor.invalid",
    "GIT_COMMITTER_NAME": "Conductor Agent",
    "GIT_COMMITTER_EMAIL": "agent@conductor.invalid",
    "GIT_TERMINAL_PROMPT": "0",
    # commit.gpgsign off: a signing key in the host's git config is not the agent's to use.
    "GIT_CONFIG_COUNT": "1",
    "GIT_CONFIG_KEY_0": "commit.gpgsign",
    "GIT_CONFIG_VALUE_0": "false",
}

# What git prints when the remote, not this machine, is the problem (DNS, TCP, TLS, HTTP, auth).
_REMOTE_FAILURE_MARKERS = (
    "could not resolve host",
    "connection refused",
    "connection timed out",
    "network is unreachable",
    "no route to host",
    "unable to access",
    "could not read from remote repository",
    "the remote end hung up",
    "does not appear to be a git repository",
    "does not exist",
    "repository not found",
    "authentication failed",
    "terminal prompts disabled",
    "early eof",
)


class GitError(Exception):
    """A git command failed; `stderr` holds what git said."""

    def __init__(self, args: list[str], returncode: int, stderr: str) -> None:
        last = stderr.strip().splitlines()[-1] if stderr.strip() else "no output"
        super().__init__(f"git {args[0]} failed ({returncode}): {last}")
        self.returncode = returncode
        self.stderr = stderr


class RemoteUnreachable(GitError):
    """The clone failed because the remote could not be reached or read."""


def _git(args: list[str], cwd: Path | None = None) -> str:
    proc = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env={**os.environ, **GIT_ENV},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        errors="replace",
        check=False,
    )
    if proc.returncode != 0:
        raise GitError(args, proc.returncode, proc.stderr)
    return proc.stdout


def clone(repo_url: str, base_branch: str, dest: Path) -> "Workspace":
    """Clone only `base_branch`; it becomes `origin/<base_branch>`, the bundle's prerequisite."""
    try:
        _git(["clone", "--single-branch", "--branch", base_branch, "--", repo_url, str(dest)])
    except GitError as err:
        if any(marker in err.stderr.lower() for marker in _REMOTE_FAILURE_MARKERS):
            raise RemoteUnreachable(["clone"], err.returncode, err.stderr) from err
        raise
    return Workspace(dest)


@dataclass(frozen=True)
class Workspace:
    path: Path

    def create_branch(self, branch: str) -> None:
        _git(["switch", "--create", branch], cwd=self.path)

    def commit_all(self, message: str) -> str | None:
        """Commit every change in the tree; None when there was nothing to commit."""
        _git(["add", "--all"], cwd=self.path)
        if not _git(["diff", "--cached", "--name-only"], cwd=self.path).strip():
            return None
        _git(["commit", "--quiet", "-m", message], cwd=self.path)
        return self.head()

    def head(self) -> str:
        return _git(["rev-parse", "HEAD"], cwd=self.path).strip()

    def commits_ahead(self, base_branch: str) -> int:
        """Commits on HEAD that `origin/<base_branch>` lacks (a coding agent may commit itself)."""
        out = _git(["rev-list", "--count", f"refs/remotes/origin/{base_branch}..HEAD"], cwd=self.path)
        return int(out.strip())

    def create_bundle(self, dest_bundle: Path, base_branch: str, branch: str) -> Path:
        """Bundle `refs/heads/<branch>` minus what the remote's base branch has.

        The conductor fetches it into its own clone of the remote, which has those prerequisite
        commits, so the bundle stays as small as the agent's work.
        """
        _git(
            [
                "bundle",
                "create",
                str(dest_bundle),
                f"refs/heads/{branch}",
                f"^refs/remotes/origin/{base_branch}",
            ],
            cwd=self.path,
        )
        return dest_bundle
