"""The README's `temporal workflow …` command lines, run as written with the real `temporal` binary."""

import asyncio
import json
import re
import shlex
from pathlib import Path

from conductor_worker.process.devserver import temporal_executable

README = Path(__file__).resolve().parent.parent / "README.md"
README_JOB = "job/ticket/jira/ENG-123"
README_CLAIM = "repo-claim//srv/git/app.git"


def readme_command(pattern: str) -> list[str]:
    """The one README line starting `temporal workflow` that matches `pattern`, as argv."""
    lines = [
        line
        for line in README.read_text().splitlines()
        if line.startswith("temporal workflow")
        and (README_JOB in line or README_CLAIM in line)  # the job and claim commands, not the pool's
        and re.search(pattern, line)
    ]
    assert len(lines) == 1, f"expected one README command matching {pattern!r}, found {lines}"
    return shlex.split(lines[0])


async def run_readme_command(pattern: str, address: str, job_id: str = "", claim_id: str = "") -> str:
    """Run it against `address` for a real job (and claim); returns stdout, fails on a non-zero exit."""
    argv = [
        arg.replace(README_JOB, job_id).replace(README_CLAIM, claim_id) for arg in readme_command(pattern)
    ]
    # Only the connection and the output format are added to the README's line.
    argv = [temporal_executable(), *argv[1:], "--address", address, "--output", "json"]
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, f"{shlex.join(argv)} exited {proc.returncode}: {err.decode()}"
    return out.decode()


def cli_model(model, output: str):
    """A contract model from the CLI's JSON; the CLI prints empty lists as null, so those are dropped
    (at every level)."""
    return model.model_validate(_without_nulls(query_result(output)))


def _without_nulls(value):
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    return value


def query_result(output: str):
    """The value a `temporal workflow query|update … --output json` printed."""
    data = json.loads(output)
    for key in ("queryResult", "result"):
        if key in data:
            value = data[key]
            return value[0] if isinstance(value, list) and len(value) == 1 else value
    return data
