"""A conductor's private on-disk record of the job attempts whose agents talked to it.

What an attempt's agent needs (task files, budgets) and what it delivers (its bundle) are in the blob
store every replica shares (stores/attempts.py); nothing here is needed by another replica.

Layout under `<state_dir>/jobs/<job id as a file name>/attempt-<n>/`:

    handshake.json   written when the agent handshakes
    heartbeat        rewritten on every agent heartbeat (its mtime is the last beat): JSON with the
                     phase and the task DAG's step states (`{"clone": "SUCCEEDED", "code": "RUNNING"}`)
    result.json      the agent's structured result (contracts.jobs.AgentResult)

handshake.json, heartbeat and result.json are the gateway's local record of what the agent said; the job
learns it through Temporal (conductor_worker/gateway/agent_channel.py) and nothing polls them. result.json also
makes a retried upload of the same attempt a duplicate, and ends the attempt's model spending.

Files are written atomically (temp file + rename) so a reader never sees half a result.
Agent logs go to conductor_worker/gateway/log_store.py.
"""

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path

from contracts.ids import safe_name
from contracts.jobs import AgentResult


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class JobAttemptDir:
    """One job attempt's directory."""

    def __init__(self, jobs_dir: Path, job_id: str, attempt: int) -> None:
        self.job_id = job_id
        self.attempt = attempt
        self.root = jobs_dir / safe_name(job_id) / f"attempt-{attempt}"

    @property
    def result_path(self) -> Path:
        return self.root / "result.json"

    @property
    def heartbeat_path(self) -> Path:
        return self.root / "heartbeat"

    @property
    def handshake_path(self) -> Path:
        return self.root / "handshake.json"

    @property
    def agent_log_path(self) -> Path:
        return self.root / "agent.log"

    # Agent progress -----------------------------------------------------------------------

    def record_handshake(self, info: dict) -> None:
        write_atomic(self.handshake_path, json.dumps({**info, "at": time.time()}).encode())
        self.record_heartbeat("handshake")

    def record_heartbeat(self, phase: str, steps: dict[str, str] | None = None) -> None:
        """Record a beat; `steps` (name -> StepStatus value) replaces the step states, None keeps them."""
        if steps is None:
            steps = self.step_states()
        write_atomic(self.heartbeat_path, json.dumps({"phase": phase, "steps": steps}).encode())

    def _heartbeat_record(self) -> tuple[float, dict] | None:
        try:
            at, text = self.heartbeat_path.stat().st_mtime, self.heartbeat_path.read_text()
        except FileNotFoundError:
            return None
        if text.startswith("{"):
            return at, json.loads(text)
        # Written by a conductor from before step states: the file held the bare phase.
        return at, {"phase": text, "steps": {}}

    def last_heartbeat(self) -> tuple[float, str] | None:
        record = self._heartbeat_record()
        return (record[0], record[1]["phase"]) if record else None

    def step_states(self) -> dict[str, str]:
        """The agent's task DAG steps (in spec order) -> their StepStatus value as last reported."""
        record = self._heartbeat_record()
        return dict(record[1].get("steps", {})) if record else {}

    # Result -------------------------------------------------------------------------------

    def store_result(self, result: AgentResult) -> None:
        write_atomic(self.result_path, result.model_dump_json(indent=2).encode())

    def result(self) -> AgentResult | None:
        if not self.result_path.exists():
            return None
        return AgentResult.model_validate_json(self.result_path.read_text())
