"""A local agent's processes, read from /proc: is one alive, which one a launch did not record, what is left.

Every spawn runs in a work directory of its own (`<attempt dir>/workdir-<id>`, its cwd and HOME): the
spawned process (the sandbox's holder, or the agent itself when unsandboxed) and the processes under it
(bwrap, the sandbox's init, the agent, its steps) have that cwd or one below it. That is how a launch
retried after its conductor died finds the agent, and how a stop finds what its signals did not reach.
"""

import os
from pathlib import Path

WORKDIR_PREFIX = "workdir-"


def pid_alive(pid: int) -> bool:
    """True for a running (not zombie) process whose command line is one of our agents.

    An empty command line is a process inside its exec: the kernel fills in the arguments (and environment)
    after the exec has closed the pipe `subprocess.Popen` waits on, so a just-launched agent can read empty.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X") and (b"agent_runtime" in cmdline or not cmdline)


def attempt_processes(attempt_root: Path) -> dict[int, int]:
    """The live agent processes working in one of this attempt's work directories (or below): pid -> parent."""
    workdirs = [str(path.resolve()) for path in attempt_root.glob(f"{WORKDIR_PREFIX}*")]
    if not workdirs:
        return {}
    found: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
            if not any(cwd == workdir or cwd.startswith(workdir + "/") for workdir in workdirs):
                continue
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile, or not ours to read
        if pid_alive(int(entry.name)):
            found[int(entry.name)] = parent
    return found


def unrecorded_agent(attempt_root: Path) -> int | None:
    """The live agent a launch spawned in this attempt and did not record; None: there is none.
    Of the attempt's processes, the one whose parent is not among them is what a launch records."""
    found = attempt_processes(attempt_root)
    roots = [pid for pid, parent in found.items() if parent not in found]
    return min(roots) if roots else None
