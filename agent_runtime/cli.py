"""`conductor-agent`: the command line of the agent binary.

`run` is the per-job mode a launcher starts with a job token. The long-lived node-agent mode is the
sibling command `pool` (agent_runtime/pool.py), which is why `run` is a subcommand rather than the whole app.
"""

import logging
import os
import shutil
import socket
import tempfile
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from agent_runtime.connection import TlsFiles
from agent_runtime.job import DEFAULT_REPORT_TIMEOUT, EXIT_RESULT_KEPT, run_job
from agent_runtime.log_buffer import DEFAULT_MEMORY_BYTES, DEFAULT_SPILL_BYTES

app = typer.Typer(add_completion=False, no_args_is_help=True)


class CodingAgent(StrEnum):
    DEMO = "demo"
    CODEX = "codex"
    CLAUDE = "claude"


# TLS options of both modes: the gateway (gRPC) and the REST API (HTTPS) use the same certificates.
TlsCaOption = Annotated[
    Path | None,
    typer.Option(
        envvar="CONDUCTOR_AGENT_TLS_CA",
        help="CA certificate (PEM) to verify the conductor with; set it when the conductor serves TLS.",
        dir_okay=False,
        exists=True,
    ),
]
TlsCertOption = Annotated[
    Path | None,
    typer.Option(
        envvar="CONDUCTOR_AGENT_TLS_CERT",
        help="Client certificate (PEM), for mTLS.",
        dir_okay=False,
        exists=True,
    ),
]
TlsKeyOption = Annotated[
    Path | None,
    typer.Option(
        envvar="CONDUCTOR_AGENT_TLS_KEY", help="Client key (PEM), for mTLS.", dir_okay=False, exists=True
    ),
]


def _tls_files(ca: Path | None, cert: Path | None, key: Path | None) -> TlsFiles | None:
    if (cert or key) and not ca:
        raise typer.BadParameter(
            "a client certificate needs --tls-ca (mTLS runs over TLS)", param_hint="--tls-ca"
        )
    try:
        return TlsFiles(ca, cert, key) if ca else None
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--tls-cert/--tls-key") from None


@app.callback()
def _app() -> None:
    """Take jobs from the conductor's agent gateway, run a coding agent, report the result."""


@app.command()
def run(
    gateway: Annotated[
        str,
        typer.Option(
            envvar="CONDUCTOR_AGENT_GATEWAY",
            help="Gateway address, host:port; several conductors behind no load balancer: `ipv4:host:port,host:port` (each call to any, round robin).",
        ),
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
    report_timeout: Annotated[
        float,
        typer.Option(
            envvar="CONDUCTOR_AGENT_REPORT_TIMEOUT",
            help="Seconds to keep trying to report the result (and flush the log) while the gateway "
            "is unreachable; then exit 75 with the result kept in the workdir.",
            min=0,
        ),
    ] = DEFAULT_REPORT_TIMEOUT,
    log_memory_bytes: Annotated[
        int,
        typer.Option(
            envvar="CONDUCTOR_AGENT_LOG_MEMORY_BYTES",
            help="Unsent log lines kept in memory; beyond this they wait in a file in the workdir.",
            min=1024,
        ),
    ] = DEFAULT_MEMORY_BYTES,
    log_spill_bytes: Annotated[
        int,
        typer.Option(
            envvar="CONDUCTOR_AGENT_LOG_SPILL_BYTES",
            help="Unsent log lines kept in the spill file; beyond this they are counted, not kept.",
            min=4096,
        ),
    ] = DEFAULT_SPILL_BYTES,
    tls_ca: TlsCaOption = None,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
) -> None:
    """Per-job mode: handshake, fetch task files, run the task's step DAG, upload the result.

    Exits 0 once a result is reported, even a FAILED one; 69 when the gateway could not be reached
    at first, 77 when it refused the token, 75 when the result could not be reported in time (it is
    kept in the workdir, named on stderr).
    """
    tls = _tls_files(tls_ca, tls_cert, tls_key)
    options = {
        "report_timeout": report_timeout,
        "log_memory_bytes": log_memory_bytes,
        "log_spill_bytes": log_spill_bytes,
        "tls": tls,
    }
    if workdir is not None:
        code = run_job(gateway, token, workdir, coding_agent.value, coding_agent_timeout, **options)
    else:
        tmp = Path(tempfile.mkdtemp(prefix="conductor-agent-"))
        code = run_job(gateway, token, tmp, coding_agent.value, coding_agent_timeout, **options)
        if code != EXIT_RESULT_KEPT:  # an unreported result must outlive us
            shutil.rmtree(tmp, ignore_errors=True)
    raise typer.Exit(code)


@app.command()
def pool(
    conductor: Annotated[
        str,
        typer.Option(
            envvar="CONDUCTOR_POOL_URLS",
            help="Conductor REST API URL(s), comma-separated; the next one is used when one fails.",
        ),
    ],
    join_token: Annotated[
        str,
        typer.Option(
            envvar="CONDUCTOR_POOL_JOIN_TOKEN",
            help="The pool join secret (prefer the environment variable to the command line).",
            show_default=False,
        ),
    ],
    capabilities: Annotated[str, typer.Option(help="Comma-separated, e.g. shell,python.")] = "shell",
    max_concurrency: Annotated[int, typer.Option(help="Scripts run at once, at most.", min=1)] = 1,
    agent_id: Annotated[
        str | None, typer.Option(envvar="CONDUCTOR_AGENT_ID", help="Default: <hostname>-<pid>.")
    ] = None,
    instance_id: Annotated[str, typer.Option(help="E.g. the EC2 instance id; informational.")] = "",
    workdir: Annotated[
        Path | None,
        typer.Option(
            help="Each task runs in a fresh directory under it. Default: a temporary one.", file_okay=False
        ),
    ] = None,
    poll_interval: Annotated[float, typer.Option(help="Seconds between polls while idle.", min=0.05)] = 1.0,
    tls_ca: TlsCaOption = None,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
) -> None:
    """Node-agent mode (seed 003): register, pull script tasks, run them, report structured results.

    Runs until SIGTERM/SIGINT, then finishes and reports the running scripts (a second signal exits at
    once). Exits 77 when the conductor refuses the join token or the registration.
    """
    # Here, not at the top: the pool's HTTP client (httpx) costs the per-job agent ~8 MiB it never uses.
    from agent_runtime.pool import run_pool
    from contracts.pool import AgentRegistration

    # Scripts inherit this process's environment: they must not see the pool's join secret.
    os.environ.pop("CONDUCTOR_POOL_JOIN_TOKEN", None)
    try:
        registration = AgentRegistration(
            agent_id=agent_id or f"{socket.gethostname()}-{os.getpid()}",
            instance_id=instance_id,
            capabilities=[c.strip() for c in capabilities.split(",") if c.strip()],
            max_concurrency=max_concurrency,
        )
    except ValidationError as err:
        raise typer.BadParameter(str(err)) from err
    urls = [u.strip() for u in conductor.split(",") if u.strip()]
    tls = _tls_files(tls_ca, tls_cert, tls_key)
    raise typer.Exit(run_pool(urls, registration, join_token, workdir, poll_interval, tls))


def main() -> None:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s conductor-agent %(levelname)s %(message)s",
    )
    app(prog_name="conductor-agent")
