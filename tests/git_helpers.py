"""Small git tools for tests: bare repositories and agent-style branch bundles, via the git CLI."""

import hashlib
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

from stores.attempts import bundle_key

# Hermetic git: no user or system config (signing, hooks, default branch) leaks into tests.
GIT_ENV = {
    **os.environ,
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_AUTHOR_NAME": "Test Agent",
    "GIT_AUTHOR_EMAIL": "agent@example.invalid",
    "GIT_COMMITTER_NAME": "Test Agent",
    "GIT_COMMITTER_EMAIL": "agent@example.invalid",
}


def git(*args: str, cwd: Path | None = None) -> str:
    """Run git and return its stdout; a failure raises with git's stderr in the message."""
    done = subprocess.run(["git", *args], cwd=cwd, env=GIT_ENV, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {done.stderr}")
    return done.stdout.strip()


def rev_parse(repo: Path, ref: str) -> str | None:
    """The commit `ref` points at in `repo`, or None when there is no such ref."""
    done = subprocess.run(
        ["git", "--git-dir", str(repo), "rev-parse", "--verify", "--quiet", ref],
        env=GIT_ENV,
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or None


def make_bare_repo_from(source: Path | Mapping[str, str], bare: Path, branch: str = "main") -> Path:
    """A bare repository at `bare` whose `branch` has one commit holding `source`.

    `source` is a directory to copy or a mapping of relative path -> text.
    """
    work = bare.with_name(bare.name + "-seed")
    git("init", "--quiet", "--initial-branch", branch, str(work))
    files = source if isinstance(source, Mapping) else _read_tree(source)
    _write(work, files)
    git("add", "--all", cwd=work)
    git("commit", "--quiet", "-m", "Initial commit", cwd=work)
    git("init", "--quiet", "--bare", "--initial-branch", branch, str(bare))
    git("push", "--quiet", str(bare), f"refs/heads/{branch}:refs/heads/{branch}", cwd=work)
    return bare


def make_branch_bundle(
    bare: Path,
    work: Path,
    branch: str,
    files: Mapping[str, str],
    message: str = "Agent change",
    base_branch: str = "main",
) -> tuple[Path, str]:
    """Do what the agent does: clone `bare` into `work`, commit `files` on `branch`, bundle it.

    The branch starts at `origin/<base_branch>`, so a second call with a new `work` makes a
    sibling commit (a retried job), not a descendant. The bundle holds only the new commits,
    with the base as prerequisite. Returns (bundle path, commit sha).
    """
    git("clone", "--quiet", str(bare), str(work))
    git("checkout", "--quiet", "-b", branch, f"origin/{base_branch}", cwd=work)
    _write(work, files)
    git("add", "--all", cwd=work)
    git("commit", "--quiet", "-m", message, cwd=work)
    bundle = work.with_name(work.name + ".bundle")
    git(
        "bundle",
        "create",
        "--quiet",
        str(bundle),
        f"refs/heads/{branch}",
        f"^origin/{base_branch}",
        cwd=work,
    )
    return bundle, git("rev-parse", "HEAD", cwd=work)


def _read_tree(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): p.read_text()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not {".git", "__pycache__"} & set(p.relative_to(root).parts)
    }


def _write(root: Path, files: Mapping[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def stored_bundle(blobs, bundle: Path | None, job_id: str = "job/test") -> dict:
    """An agent result's bundle fields once `bundle` is in the blob store, as the gateway leaves them."""
    if bundle is None:
        return {}
    key = bundle_key(job_id, 1, hashlib.sha256(bundle.read_bytes()).hexdigest())
    return {"bundle_key": key, "bundle_sha256": blobs.put_file(key, bundle)}
