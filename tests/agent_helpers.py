"""Run a real `conductor-agent` against a gateway with no Temporal around it: stage a job, mint its token."""

import asyncio
import json
import sys
import uuid
from pathlib import Path

from conductor_worker.config import Settings
from contracts.jobs import TaskFile, TaskInstructions
from security.tokens import mint_token
from tests.helpers import stage_attempt


def stage_job(settings: Settings, remote: Path, steps: list[dict] | None = None) -> tuple[str, str]:
    """Stage attempt 1 of a fresh job on `remote` (plus a `steps.json`); returns (job id, token)."""
    key = f"LOG-{uuid.uuid4().hex[:6]}"
    job_id = f"job/ticket/jira/{key}"
    instructions = TaskInstructions(
        job_id=job_id,
        ticket_key=key,
        repo_url=str(remote),
        base_branch="main",
        branch=f"conductor/{key}",
        commit_message=f"{key}: log test",
    )
    files = [
        TaskFile(path="job.json", content=instructions.model_dump_json()),
        TaskFile(path="prompt.md", content=f"# {key}\n\nA job for the log tests.\n"),
    ]
    if steps is not None:
        files.append(TaskFile(path="steps.json", content=json.dumps(steps)))
    stage_attempt(settings, job_id, 1, files)
    return job_id, mint_token(settings.signing_secret(), job_id, 1, ttl_seconds=3600)


async def start_agent(gateway: str, token: str, workdir: Path, *options: str) -> asyncio.subprocess.Process:
    """`conductor-agent run` as an asyncio subprocess: the gateway under test serves from this loop.

    Its stderr goes to `workdir/agent.err` (a pipe nobody reads could block it).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    with (workdir / "agent.err").open("wb") as err:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "agent_runtime",
            "run",
            "--gateway",
            gateway,
            "--token",
            token,
            "--workdir",
            str(workdir),
            *options,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=err,
        )
