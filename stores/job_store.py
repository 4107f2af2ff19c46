"""A conductor's private on-disk record of the job attempts whose agents talked to it.

What an attempt's agent needs (task files, budgets) and what it delivers (its bundle) are in the blob
store every replica shares (stores/attempts.py); nothing here is needed by another replica.

Layout under `<state_dir>/jobs/<job id as a file name>/attempt-<n>/`:

    result.json      the agent's structured result (contracts.jobs.AgentResult), as this gateway accepted it
    agent.json       the local or Fargate launcher's record of the agent it started (activities/launch_*.py)
    workdir-*/       a local agent's work directory (its HOME)

The job learns what its agent says (handshake, heartbeats with step states, the result) through Temporal
(conductor_worker/gateway/agent_channel.py), and nothing polls these files: result.json only makes a retried
upload of the same attempt to this gateway a duplicate, ends the attempt's model spending on this host
(model_gateway/access.py) and tells the local launcher that an agent it started has reported. The agent's
handshake and heartbeats leave no file: their record is the await activity's heartbeat details in Temporal.

Files are written atomically (temp file + rename) so a reader never sees half a result.
Agent logs go to conductor_worker/gateway/log_store.py.
"""

import hashlib
import os
import tempfile
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
    def agent_log_path(self) -> Path:
        return self.root / "agent.log"

    # Result -------------------------------------------------------------------------------

    def store_result(self, result: AgentResult) -> None:
        write_atomic(self.result_path, result.model_dump_json(indent=2).encode())

    def result(self) -> AgentResult | None:
        if not self.result_path.exists():
            return None
        return AgentResult.model_validate_json(self.result_path.read_text())
