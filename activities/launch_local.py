"""The `local` launcher: the agent as a subprocess of the conductor (the embedded default).

The agent's environment is built from an allow-list, never inherited: it gets the gateway addresses,
its per-job token and a work directory, and nothing else that could reach GitHub, Temporal, a cloud or a
model provider (the coding CLI reaches the model through the conductor's model gateway).
"""

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from temporalio import activity

from activities.agent_env import agent_job_environment
from conductor_worker.config import Settings
from conductor_worker.job_store import JobAttemptDir, write_atomic
from conductor_worker.tokens import mint_token
from contracts.activity_io import LaunchAgentInput, LaunchAgentResult, StopAgentInput

log = logging.getLogger(__name__)

# Inherited only when set; locale and PATH let git and Python behave as they do for the operator.
_INHERITED_ENV = ("PATH", "LANG", "LC_ALL", "TZ")
STOP_GRACE_SECONDS = 5.0


def agent_environment(settings: Settings, token: str, workdir: Path) -> dict[str, str]:
    env = {name: os.environ[name] for name in _INHERITED_ENV if name in os.environ}
    env.update(
        agent_job_environment(settings, token), HOME=str(workdir), CONDUCTOR_AGENT_WORKDIR=str(workdir)
    )
    return env


def agent_command() -> list[str]:
    return [sys.executable, "-m", "agent_runtime", "run"]


def _pid_alive(pid: int) -> bool:
    """True for a running (not zombie) process whose command line is one of our agents."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X") and b"agent_runtime" in cmdline


class LocalLauncher:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._secret = settings.signing_secret()
        # Children of this process, so they can be reaped (a zombie would look alive).
        self._children: dict[int, subprocess.Popen] = {}

    def is_alive(self, agent_id: str) -> bool:
        pid = int(agent_id.removeprefix("local:"))
        child = self._children.get(pid)
        if child is not None and child.poll() is not None:
            return False
        return _pid_alive(pid)

    @activity.defn(name="launch_agent")
    async def launch_agent(self, input: LaunchAgentInput) -> LaunchAgentResult:
        job = JobAttemptDir(self._settings.jobs_dir, input.job_id, input.attempt)
        record = job.root / "agent.json"
        if record.exists():
            # A retried launch (e.g. the conductor died after spawning): never start a second agent.
            agent_id = json.loads(record.read_text())["agent_id"]
            if self.is_alive(agent_id) or job.result() is not None:
                return LaunchAgentResult(agent_id=agent_id, launcher="local")
        # A directory per spawn: a conductor killed between spawning and writing agent.json leaves an
        # unrecorded agent behind, and the retried launch's agent must not clone into the same place.
        workdir = job.root / f"workdir-{uuid.uuid4().hex[:8]}"
        workdir.mkdir(parents=True)
        token = mint_token(self._secret, input.job_id, input.attempt, self._settings.token_ttl_seconds)
        with job.agent_log_path.open("ab") as agent_log:
            child = subprocess.Popen(
                agent_command(),
                env=agent_environment(self._settings, token, workdir),
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=agent_log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so stop_agent reaches every child
            )
        self._children[child.pid] = child
        agent_id = f"local:{child.pid}"
        write_atomic(record, json.dumps({"agent_id": agent_id, "started_at": time.time()}).encode())
        log.info("launched agent %s for %s attempt %d", agent_id, input.job_id, input.attempt)
        return LaunchAgentResult(agent_id=agent_id, launcher="local")

    @activity.defn(name="stop_agent")
    async def stop_agent(self, input: StopAgentInput) -> None:
        """SIGTERM the agent's process group, SIGKILL after a grace period. Idempotent."""
        pid = int(input.agent_id.removeprefix("local:"))
        if not self.is_alive(input.agent_id):
            self._reap(pid)
            return
        log.info("stopping agent %s (%s)", input.agent_id, input.reason or "job over")
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        while self.is_alive(input.agent_id) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        if self.is_alive(input.agent_id):
            _signal_group(pid, signal.SIGKILL)
        self._reap(pid)

    def _reap(self, pid: int) -> None:
        child = self._children.pop(pid, None)
        if child is not None:
            try:
                child.wait(timeout=STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                self._children[pid] = child


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
