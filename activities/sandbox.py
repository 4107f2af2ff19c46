"""The local launcher's sandbox: every agent runs inside bubblewrap (`bwrap`), which sees only what it needs.

Inside: an unprivileged user (uid 1000) in its own user, PID, IPC, UTS, cgroup and mount namespaces; the
system (/usr and a few files of /etc) read-only; the Python that runs the agent and the agent's own
packages read-only; the tools on PATH read-only; its work directory as the only writable place; a private
/tmp; a fresh /proc that shows only the sandbox's processes. The network is shared (the agent dials the
conductor's gateway on loopback); egress rules beyond that are the deployment's (README "Sandbox").

`--die-with-parent` and the PID namespace make the sandbox one unit: when the agent (the namespace's first
command) exits, bwrap's init exits and the kernel kills every process left in the namespace, whatever
session it moved to. bwrap's parent is a small holder shell in a session of its own (the agent's id):
killing the holder kills the sandbox, while a conductor that exits (a deploy's drain, a crash) leaves its
agents working for the next conductor to adopt, as the unsandboxed agent always did.

A route whose remote is a path on this machine is never bound in: the launcher clones its base branch
(only that branch) into a seed under the state directory and binds the seed read-only at the remote's
path. The agent clones as before; it sees no other branch or tag, and nothing it pushes lands anywhere.
"""

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

# Settings.sandbox values.
BWRAP = "bwrap"
UNSAFE = "unsafe"

SANDBOX_UID = 1000
HOLDER_NAME = "conductor-agent-sandbox"

# /etc holds secrets on some hosts (shadow, ssh keys, cloud credentials): only these are shown.
_ETC_FILES = (
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/nsswitch.conf",
    "/etc/host.conf",
    "/etc/gai.conf",
    "/etc/passwd",
    "/etc/group",
    "/etc/localtime",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/alternatives",
    "/etc/mime.types",
)
# Merged-/usr systems have these as links into /usr; otherwise they are bound read-only.
_ROOT_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# The agent's own packages: the only parts of the project it imports.
_AGENT_PACKAGES = ("agent_runtime", "contracts", "proto")
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class SandboxUnavailable(RuntimeError):
    """bubblewrap is not installed and the operator did not choose the unsafe mode."""


def bwrap_executable() -> str:
    """The bwrap binary, or SandboxUnavailable saying how to get one or how to go without."""
    path = shutil.which(BWRAP)
    if path is None:
        raise SandboxUnavailable(
            "the local launcher runs every agent in bubblewrap, and `bwrap` is not on PATH: install it "
            "(Debian/Ubuntu: apt-get install bubblewrap; `make test` and `make demo` do this as root), or "
            "for development only set CONDUCTOR_SANDBOX=unsafe (the agent then runs as the conductor's "
            "user and can read everything the conductor can; README 'Sandbox')"
        )
    return path


@dataclass
class SandboxPlan:
    """What one agent's sandbox holds besides the system: its work directory and read-only extras."""

    workdir: Path
    # Paths the sandbox must not show even when a bound directory contains them (the state directory).
    hidden: list[Path] = field(default_factory=list)
    # Extra read-only binds, source -> path inside.
    read_only: dict[Path, str] = field(default_factory=dict)


def bwrap_command(plan: SandboxPlan, command: list[str], path_env: str) -> list[str]:
    """The command line that runs `command` in `plan.workdir` inside the sandbox, under its holder.

    The holder is `sh` waiting for bwrap (not exec'ing it: `exit $?` follows), so bwrap's parent is the
    holder and `--die-with-parent` ties the sandbox to it rather than to the conductor.
    """
    args = [
        "/bin/sh",
        "-c",
        '"$@"; exit $?',
        HOLDER_NAME,
        bwrap_executable(),
        "--unshare-all",
        "--share-net",
        "--uid",
        str(SANDBOX_UID),
        "--gid",
        str(SANDBOX_UID),
        "--die-with-parent",
        "--new-session",
        "--ro-bind",
        "/usr",
        "/usr",
    ]
    for link in _ROOT_LINKS:
        if os.path.islink(link):
            args += ["--symlink", os.readlink(link), link]
        elif os.path.isdir(link):
            args += ["--ro-bind", link, link]
    for etc in _ETC_FILES:
        args += ["--ro-bind-try", etc, etc]
    # Before the binds below: a private /tmp must not cover a bound path that lies under /tmp.
    args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    bound = [Path("/usr")]
    for source in _runtime_paths(path_env):
        if not any(source.is_relative_to(outer) for outer in bound):
            args += ["--ro-bind", str(source), str(source)]
            bound.append(source)
    for source, inside in plan.read_only.items():
        args += ["--ro-bind", str(source), inside]
    # Mounted after the binds, so a bound directory that happens to contain them shows them empty.
    for hidden in plan.hidden:
        if any(hidden.resolve().is_relative_to(source) for source in bound):
            args += ["--tmpfs", str(hidden.resolve())]
    workdir = str(plan.workdir.resolve())
    args += ["--bind", workdir, workdir, "--chdir", workdir, "--", *command]
    return args


def _runtime_paths(path_env: str) -> list[Path]:
    """What the agent runs from, read-only: its Python (venv and base), its packages, the tools on PATH."""
    paths = [Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).resolve().parent.parent]
    paths += [PROJECT_ROOT / package for package in _AGENT_PACKAGES]
    # Coding CLIs installed into the project (npm prefix .tools/), when present.
    paths.append(PROJECT_ROOT / ".tools")
    paths += [Path(entry) for entry in path_env.split(os.pathsep) if entry and os.path.isabs(entry)]
    seen: list[Path] = []
    for path in paths:
        resolved = path.resolve()
        if resolved.is_dir() and resolved not in seen and resolved != Path("/"):
            seen.append(resolved)
    # Outer directories first, so the ones inside them are skipped as already bound.
    return sorted(seen, key=lambda p: len(p.parts))


def local_remote_path(repo_url: str) -> str | None:
    """The path of a remote on this machine (`/srv/x.git`, `file:///srv/x.git`); None for a network URL."""
    path = repo_url.removeprefix("file://")
    return path if path.startswith("/") else None


def seed_local_remote(repo_url: str, base_branch: str, seeds_dir: Path) -> Path | None:
    """A bare repository holding only `base_branch` of a local remote, as it is now; None if unreadable.

    Seeds are shared by every job on the same base commit (`<seeds_dir>/<remote hash>-<sha>.git`), so
    a burst of jobs on one repository clones it once. `--no-local`: a real copy, never hard links to
    the remote's own object files. An unreadable remote or branch gets no seed: the agent's clone then
    fails as it would have, with git's message and the `network` failure class.
    """
    git_env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    listed = subprocess.run(
        ["git", "ls-remote", "--heads", "--", repo_url, f"refs/heads/{base_branch}"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
        env=git_env,
    )
    if listed.returncode != 0 or not listed.stdout.strip():
        return None
    sha = listed.stdout.split()[0]
    seed = seeds_dir / f"{hashlib.sha256(repo_url.encode()).hexdigest()[:16]}-{sha}.git"
    if seed.exists():
        return seed
    seeds_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=seeds_dir, prefix=".seed-"))
    cloned = subprocess.run(
        ["git", "clone", "--quiet", "--bare", "--no-local", "--single-branch", "--no-tags"]
        + ["--branch", base_branch, "--", repo_url, str(tmp / "repo.git")],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
        env=git_env,
    )
    try:
        if cloned.returncode != 0:
            return None
        try:
            (tmp / "repo.git").rename(seed)
        except OSError:
            pass  # another launch made the same seed first
        return seed if seed.exists() else None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# Processes ----------------------------------------------------------------------------------------


def children_of(pid: int) -> list[int]:
    """The live children of `pid` (from /proc: this kernel has no /proc/PID/task/TID/children)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == pid and fields[0] not in ("Z", "X"):
            found.append(int(entry))
    return found


def sandboxed_agent(holder_pid: int) -> tuple[int | None, int | None]:
    """(bwrap's init in the namespace, the agent under it) as host pids; None where gone.

    The chain is holder -> bwrap -> init (pid 1 inside) -> agent (pid 2 inside).
    """
    chain: list[int] = [holder_pid]
    for _ in range(3):
        children = children_of(chain[-1])
        if not children:
            break
        chain.append(children[0])
    init = chain[2] if len(chain) > 2 else None
    agent = chain[3] if len(chain) > 3 else None
    return init, agent
