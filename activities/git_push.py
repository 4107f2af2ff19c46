"""Push one branch out of an agent's git bundle to a remote, with the real git CLI.

The agent never holds push credentials: it uploads a bundle, and the conductor pushes it from a
throw-away bare repository. Nothing here knows about Temporal, so it is usable from any activity.
"""

import base64
import os
import re
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

# A push of a large repository can be slow, but a hung git must not hold a worker thread forever.
DEFAULT_TIMEOUT_SECONDS = 600

_URL_USERINFO = re.compile(r"(://)[^/@\s]+@")


class GitCommandError(RuntimeError):
    """A git command failed; the message names the command and carries its (redacted) stderr."""

    def __init__(self, command: str, returncode: int | None, stderr: str) -> None:
        self.command = command
        self.returncode = returncode
        self.stderr = stderr
        status = "timed out" if returncode is None else f"exit {returncode}"
        super().__init__(f"`{command}` failed ({status}): {stderr.strip() or '(no output)'}")


class BundleError(RuntimeError):
    """The bundle is unusable (corrupt, missing prerequisites, wrong commit): a retry won't help."""


class BundleCommandError(GitCommandError, BundleError):
    """A git command reading the bundle failed."""


def push_bundle_branch(
    bundle: Path,
    branch: str,
    remote_url: str,
    base_branch: str,
    extra_git_config: dict[str, str] | None = None,
    expected_sha: str = "",
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    max_bytes: int | None = None,
) -> str:
    """Push `refs/heads/<branch>` from `bundle` to `remote_url`, replacing it there; return its sha.

    The bundle's prerequisites are commits on `base_branch`, so that branch is fetched from the
    remote first. The push is forced because the conductor owns the branch: a retried job replaces
    it, and pushing the same commit again is a no-op. With `expected_sha`, a bundle whose branch
    is at any other commit is refused before anything is pushed. A bundle over `max_bytes` is refused
    before git reads it (`git bundle verify` of a huge bundle takes minutes).
    """
    size = bundle.stat().st_size
    if max_bytes is not None and size > max_bytes:
        raise BundleError(
            f"bundle is {size} bytes, over the limit of {max_bytes} bytes (CONDUCTOR_MAX_BUNDLE_BYTES)"
        )
    git = _Git(extra_git_config or {}, timeout)
    local_ref = f"refs/heads/{branch}"
    with tempfile.TemporaryDirectory(prefix="conductor-push-") as tmp:
        repo = Path(tmp) / "repo.git"
        # No template: its sample hooks are 20 files to copy and delete again for every push.
        git.run(["init", "--quiet", "--bare", "--template=", str(repo)])
        git.run(
            [
                "fetch",
                "--quiet",
                "--no-tags",
                remote_url,
                f"+refs/heads/{base_branch}:refs/conductor/base",
            ],
            repo=repo,
        )
        git.run(["bundle", "verify", "--quiet", str(bundle)], repo=repo, error=BundleCommandError)
        git.run(
            ["fetch", "--quiet", "--no-tags", str(bundle), f"+{local_ref}:{local_ref}"],
            repo=repo,
            error=BundleCommandError,
        )
        sha = git.run(["rev-parse", "--verify", f"{local_ref}^{{commit}}"], repo=repo).strip()
        if expected_sha and sha != expected_sha:
            raise BundleError(f"bundle has {local_ref} at {sha}, expected {expected_sha}")
        git.run(["push", "--quiet", remote_url, f"+{local_ref}:{local_ref}"], repo=repo)
    return sha


def basic_auth_header_config(token: str) -> dict[str, str]:
    """Git config that sends `token` as GitHub's `x-access-token` basic auth, never in the URL."""
    encoded = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    return {"http.extraHeader": f"Authorization: Basic {encoded}"}


class _Git:
    def __init__(self, config: Mapping[str, str], timeout: float) -> None:
        self._timeout = timeout
        self._secrets = _secrets_of(config)
        # GIT_CONFIG_COUNT/KEY/VALUE instead of `-c`: same effect, but a header with a token in it
        # stays out of argv, which any local user can read from /proc or `ps`.
        self._env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_COUNT": str(len(config))}
        for i, (key, value) in enumerate(config.items()):
            self._env[f"GIT_CONFIG_KEY_{i}"] = key
            self._env[f"GIT_CONFIG_VALUE_{i}"] = value

    def run(
        self,
        args: Sequence[str],
        repo: Path | None = None,
        error: type[GitCommandError] = GitCommandError,
    ) -> str:
        argv = ["git", *(["--git-dir", str(repo)] if repo else []), *args]
        shown = self._redact(" ".join(["git", *args]))
        try:
            done = subprocess.run(
                argv,
                env=self._env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=self._timeout,
            )
        except subprocess.TimeoutExpired as e:
            raise error(shown, None, self._redact(_text(e.stderr))) from None
        if done.returncode != 0:
            raise error(shown, done.returncode, self._redact(done.stderr))
        return done.stdout

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return _URL_USERINFO.sub(r"\1***@", text)


def _secrets_of(config: Mapping[str, str]) -> list[str]:
    # Every config value is treated as secret, and so is each long word in it (the base64 part of
    # `Authorization: Basic <b64>`), in case git echoes only that part.
    secrets = {v for v in config.values() if v}
    secrets |= {word for v in config.values() for word in v.split() if len(word) >= 8}
    return sorted(secrets, key=len, reverse=True)


def _text(data: bytes | str | None) -> str:
    if isinstance(data, bytes):
        return data.decode(errors="replace")
    return data or ""
