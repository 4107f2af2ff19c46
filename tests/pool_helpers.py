"""Shared by the pool-agent tests and the history recorder: `conductor-agent pool` subprocesses."""

import os
import signal
import subprocess
import sys
from pathlib import Path

JOIN_TOKEN = "join-secret-for-tests"


def pool_agent(
    urls: list[str],
    agent_id: str,
    log: Path,
    max_concurrency: int = 2,
    capabilities: str = "shell",
    extra_args: tuple[str, ...] = (),
) -> subprocess.Popen:
    """A pool agent in its own session (so a test can SIGKILL it), logging to `log`."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agent_runtime",
            "pool",
            "--conductor",
            ",".join(urls),
            "--agent-id",
            agent_id,
            "--capabilities",
            capabilities,
            "--max-concurrency",
            str(max_concurrency),
            "--poll-interval",
            "0.2",
            *extra_args,
        ],
        env={**os.environ, "CONDUCTOR_POOL_JOIN_TOKEN": JOIN_TOKEN},
        stdin=subprocess.DEVNULL,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop_agent(proc: subprocess.Popen, timeout: float = 60) -> int:
    """SIGTERM: the agent finishes and reports its running scripts, then exits 0."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        raise


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group `pgid`."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        # After the command name: state, ppid, pgrp.
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(stat.parent.name))
    return members
