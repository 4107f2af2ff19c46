"""`conductor-agent`: the command line of the agent binary.

`run` is the per-job mode a launcher starts with a job token. The long-lived node-agent mode will be
a sibling command (`pool`), which is why `run` is a subcommand rather than the whole app.
"""

import logging
import tempfile
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from agent_runtime.job import run_job

app = typer.Typer(add_completion=False, no_args_is_help=True)


class CodingAgent(StrEnum):
    DEMO = "demo"
    CODEX = "codex"


@app.callback()
def _app() -> None:
    """Take jobs from the conductor's agent gateway, run a coding agent, report the result."""


@app.command()
def run(
    gateway: Annotated[
        str, typer.Option(envvar="CONDUCTOR_AGENT_GATEWAY", help="Gateway address, host:port.")
    ],
    token: Annotated[
        str,
        typer.Option(
            envvar="CONDUCTOR_AGENT_TOKEN",
            help="Per-job token from the launcher.",
            show_default=False,
        ),
    ],
    workdir: Annotated[
        Path | None,
        typer.Option(
            envvar="CONDUCTOR_AGENT_WORKDIR",
            help="Where task files, the clone and the bundle go. Default: a temporary directory.",
            file_okay=False,
        ),
    ] = None,
    coding_agent: Annotated[
        CodingAgent, typer.Option(envvar="CONDUCTOR_AGENT_CODING_AGENT")
    ] = CodingAgent.DEMO,
    coding_agent_timeout: Annotated[
        float,
        typer.Option(
            envvar="CONDUCTOR_AGENT_CODING_AGENT_TIMEOUT",
            help="Seconds the coding agent may run before its process group is killed.",
            min=1,
        ),
    ] = 1500,
) -> None:
    """Per-job mode: handshake, fetch task files, clone, run the coding agent, upload the result.

    Exits 0 once a result is reported, even a FAILED one; non-zero when the gateway could not be
    reached or refused the token.
    """
    if workdir is not None:
        code = run_job(gateway, token, workdir, coding_agent.value, coding_agent_timeout)
    else:
        with tempfile.TemporaryDirectory(prefix="conductor-agent-") as tmp:
            code = run_job(gateway, token, Path(tmp), coding_agent.value, coding_agent_timeout)
    raise typer.Exit(code)


def main() -> None:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s conductor-agent %(levelname)s %(message)s",
    )
    app(prog_name="conductor-agent")
