"""The `local` launcher: the agent as a sandboxed subprocess of the conductor (the embedded default).

Every agent runs inside bubblewrap (activities/sandbox.py): it sees its own work directory, the
system read-only and nothing of the conductor (state directory, environment, processes, other jobs).
Only `CONDUCTOR_SANDBOX=unsafe` runs it as a plain subprocess, and says so in the logs and the job.

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
from activities.agent_processes import WORKDIR_PREFIX, attempt_processes, pid_alive, unrecorded_agent
from activities.launcher_config import AgentEnvironment, LocalLauncherConfig
from activities.sandbox import (
    UNSAFE,
    SandboxPlan,
    bwrap_command,
    bwrap_executable,
    local_remote_path,
    sandboxed_agent,
    seed_local_remote,
)
from contracts.activity_io import LaunchAgentInput, LaunchAgentResult, StopAgentInput
from contracts.jobs import TaskInstructions
from security.tokens import mint_token
from stores.attempts import StagedAttempts, file_key
from stores.blob_store import BlobStore
from stores.job_store import JobAttemptDir, write_atomic

log = logging.getLogger(__name__)

# Inherited only when set; locale and PATH let git and Python behave as they do for the operator.
_INHERITED_ENV = ("PATH", "LANG", "LC_ALL", "TZ")
STOP_GRACE_SECONDS = 5.0
# An agent that reported its result is still sending its last log lines; it exits by itself once the
# conductor stored them (or its own flush deadline passed). Within stop_agent's 30 s activity timeout.
LOG_FLUSH_GRACE_SECONDS = 15.0


def agent_environment(agent: AgentEnvironment, token: str, workdir: Path) -> dict[str, str]:
    env = {name: os.environ[name] for name in _INHERITED_ENV if name in os.environ}
    env.update(agent_job_environment(agent, token), HOME=str(workdir), CONDUCTOR_AGENT_WORKDIR=str(workdir))
    return env


def agent_command() -> list[str]:
    return [sys.executable, "-m", "agent_runtime", "run"]


class LocalLauncher:
    def __init__(self, config: LocalLauncherConfig, blobs: BlobStore) -> None:
        self._config = config
        self._launch_config = config.launch
        self._attempts = StagedAttempts(blobs)
        self.sandbox = config.sandbox
        if self.sandbox == UNSAFE:
            log.warning(
                "CONDUCTOR_SANDBOX=unsafe: agents run unsandboxed, as the conductor's user, and can read "
                "its state directory, its environment and every job"
            )
        else:
            bwrap_executable()  # SandboxUnavailable now, at start-up, rather than at the first job
        self._secret = config.launch.token_secret
        # Where this process watches and stops the agents it starts (worker-specific task queue).
        self.host_task_queue = config.host_task_queue
        # Children of this process, so they can be reaped (a zombie would look alive).
        self._children: dict[int, subprocess.Popen] = {}

    def is_alive(self, agent_id: str) -> bool:
        pid = int(agent_id.removeprefix("local:"))
        child = self._children.get(pid)
        if child is not None and child.poll() is not None:
            return False
        return pid_alive(pid)

    @activity.defn(name="launch_agent")
    async def launch_agent(self, input: LaunchAgentInput) -> LaunchAgentResult:
        job = JobAttemptDir(self._launch_config.jobs_dir, input.job_id, input.attempt)
        record = job.root / "agent.json"
        if record.exists():
            # A retried launch (e.g. the conductor died after spawning): never start a second agent.
            recorded = json.loads(record.read_text())
            agent_id = recorded["agent_id"]
            host = recorded.get("host_task_queue", self.host_task_queue)
            if host != self.host_task_queue:
                # Another replica's agent (a shared state dir): only its host can tell whether it lives;
                # if that host is gone, the watch on its queue times out and the job relaunches.
                return self._launched(agent_id, host)
            if self.is_alive(agent_id) or job.result() is not None:
                return self._launched(agent_id, host)
        orphan = await asyncio.to_thread(unrecorded_agent, job.root)
        if orphan is not None:
            # The conductor died between spawning and writing agent.json: adopt that agent. A second one
            # would run the same attempt beside it, and its bundle would replace the reported one.
            agent_id = f"local:{orphan}"
            self._record(record, agent_id)
            log.info("found unrecorded agent %s for %s attempt %d", agent_id, input.job_id, input.attempt)
            return self._launched(agent_id, self.host_task_queue, sandbox=self.sandbox)
        # A directory per spawn, the agent's cwd: how a retried launch finds an agent it did not record.
        workdir = job.root / f"{WORKDIR_PREFIX}{uuid.uuid4().hex[:8]}"
        workdir.mkdir(parents=True)
        workdir = workdir.resolve()  # HOME and the sandbox's paths must not depend on the conductor's cwd
        token = mint_token(self._secret, input.job_id, input.attempt, self._launch_config.token_ttl_seconds)
        env = agent_environment(self._launch_config.agent, token, workdir)
        command = agent_command()
        if self.sandbox != UNSAFE:
            command = await self._sandboxed(job, workdir, command, env)
        with job.agent_log_path.open("ab") as agent_log:
            child = subprocess.Popen(
                command,
                env=env,
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=agent_log,
                stderr=subprocess.STDOUT,
                # Its own session: a conductor's exit or Ctrl-C does not reach it, and stop_agent's
                # signal to the group reaches every process in it.
                start_new_session=True,
            )
        self._children[child.pid] = child
        agent_id = f"local:{child.pid}"
        self._record(record, agent_id)
        level = logging.WARNING if self.sandbox == UNSAFE else logging.INFO
        log.log(
            level,
            "launched agent %s for %s attempt %d (sandbox: %s)",
            agent_id,
            input.job_id,
            input.attempt,
            self.sandbox,
        )
        return self._launched(agent_id, self.host_task_queue, sandbox=self.sandbox)

    def _record(self, record: Path, agent_id: str) -> None:
        write_atomic(
            record,
            json.dumps(
                {
                    "agent_id": agent_id,
                    "started_at": time.time(),
                    "sandbox": self.sandbox,
                    "host_task_queue": self.host_task_queue,
                }
            ).encode(),
        )

    def _launched(self, agent_id: str, host: str, sandbox: str = "") -> LaunchAgentResult:
        return LaunchAgentResult(
            agent_id=agent_id,
            launcher="local",
            sandbox=sandbox,
            host_task_queue=host,
            heartbeat_timeout_seconds=self._launch_config.heartbeat_timeout_seconds,
        )

    async def _sandboxed(
        self, job: JobAttemptDir, workdir: Path, command: list[str], env: dict[str, str]
    ) -> list[str]:
        """`command` inside bubblewrap; a local remote is replaced by a read-only seed of its base branch."""
        plan = SandboxPlan(workdir=workdir, hidden=list(self._config.hidden_dirs))
        agent = self._launch_config.agent
        for env_name, path in (
            ("CONDUCTOR_AGENT_TLS_CA", agent.tls_ca_file),
            ("CONDUCTOR_AGENT_TLS_CERT", agent.tls_cert_file),
            ("CONDUCTOR_AGENT_TLS_KEY", agent.tls_key_file),
        ):
            if path:
                plan.read_only[Path(path).resolve()] = str(Path(path).resolve())
                # The agent's cwd is its work directory: a relative path would name nothing there.
                env[env_name] = str(Path(path).resolve())
        instructions = await asyncio.to_thread(self._instructions, job)
        remote = local_remote_path(instructions.repo_url) if instructions else None
        if instructions is not None and remote is not None:
            seeds = self._config.seeds_dir
            seed = await asyncio.to_thread(seed_local_remote, remote, instructions.base_branch, seeds)
            if seed is not None:
                plan.read_only[seed] = remote
        return bwrap_command(plan, command, env.get("PATH", ""))

    def _instructions(self, job: JobAttemptDir) -> TaskInstructions | None:
        """The staged job.json (activities/task_files.py), for the repository the sandbox may need."""
        staged = self._attempts.get(job.job_id, job.attempt)
        if staged is None or not any(f.path == "job.json" for f in staged.files):
            return None
        key, sha256 = file_key(job.job_id, job.attempt, "job.json"), staged.file("job.json").sha256
        return TaskInstructions.model_validate_json(
            self._attempts.blobs.get_bytes(key, sha256, max_bytes=1 << 20)
        )

    @activity.defn(name="stop_agent")
    async def stop_agent(self, input: StopAgentInput) -> None:
        """SIGTERM the agent, SIGKILL after a grace period. Idempotent.

        Sandboxed, the agent is the child of bwrap's init in its PID namespace: SIGTERM goes to the
        agent itself (bwrap would die at once and take the agent with it, unheard), and the SIGKILL to
        the init, whose end kills every process of the namespace, whatever session it moved to.
        Unsandboxed, both go to the agent's process group; what left it (setsid) survives.
        Last, whatever of the attempt still runs in its work directories is killed (SIGKILL).
        """
        await self._stop(input)
        # What the signals did not reach: stopped right after its launch, a sandbox can outlive its holder
        # (bwrap's child ties itself to its parent, --die-with-parent, only after the clone; seen in CI).
        attempt = JobAttemptDir(self._launch_config.jobs_dir, input.job_id, input.attempt)
        leftovers = await asyncio.to_thread(attempt_processes, attempt.root)
        for pid in leftovers:
            _signal(pid, signal.SIGKILL)
        if leftovers:
            log.warning(
                "killed %d leftover process(es) of %s attempt %d", len(leftovers), input.job_id, input.attempt
            )

    async def _stop(self, input: StopAgentInput) -> None:
        pid = int(input.agent_id.removeprefix("local:"))
        if not self.is_alive(input.agent_id):
            self._reap(pid)
            return
        if JobAttemptDir(self._launch_config.jobs_dir, input.job_id, input.attempt).result() is not None:
            # Signalled now, its log would lose its tail (and never be marked complete).
            deadline = time.monotonic() + LOG_FLUSH_GRACE_SECONDS
            while self.is_alive(input.agent_id) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            if not self.is_alive(input.agent_id):
                self._reap(pid)
                return
        log.info("stopping agent %s (%s)", input.agent_id, input.reason or "job over")
        init, agent = sandboxed_agent(pid) if self.sandbox != UNSAFE else (None, None)
        if agent is not None:
            _signal(agent, signal.SIGTERM)
        else:
            _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        while self.is_alive(input.agent_id) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        if init is not None:
            _signal(init, signal.SIGKILL)  # the namespace's init: every process of the sandbox goes
        if self.is_alive(input.agent_id):
            _signal_group(pid, signal.SIGKILL)  # the holder, and with it bwrap (--die-with-parent)
        self._reap(pid)

    def _reap(self, pid: int) -> None:
        child = self._children.pop(pid, None)
        if child is not None:
            try:
                child.wait(timeout=STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                self._children[pid] = child


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
