"""`conductor`: run the conductor (`dev`, `serve`), feed it (`send`), rehearse it (`simulate`), run scripts
on pool agents (`run-script`), look into and redrive its dead-letter queue (`dlq`), find what is stuck
(`doctor`), run agent jobs on a schedule (`schedule`)."""

import asyncio
import gc
import logging
import signal
from pathlib import Path
from typing import Annotated

import typer

from conductor_worker.commands.dlq_cli import app as dlq_app
from conductor_worker.commands.logs_cli import logs as logs_command
from conductor_worker.commands.schedule_cli import app as schedule_app
from conductor_worker.commands.search_attributes_cli import app as search_attributes_app
from conductor_worker.config import Settings

app = typer.Typer(
    help="Agent Conductor: tickets -> durable coding-agent jobs on Temporal.", no_args_is_help=True
)
app.add_typer(search_attributes_app, name="search-attributes")
app.add_typer(dlq_app, name="dlq")
app.add_typer(schedule_app, name="schedule")
app.command(name="logs")(logs_command)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


async def _serve_until_signalled(settings: Settings) -> None:
    from conductor_worker.process.app import run_conductor

    stop = asyncio.Event()

    def drain(sig: signal.Signals) -> None:
        # A deploy's SIGTERM drains like the shutdown flag file does (conductor_worker/process/drain.py).
        logging.getLogger(__name__).info("%s received: draining", sig.name)
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, drain, sig)
    # Everything imported so far lives as long as the process: keep it out of every later full GC pass,
    # which may run inside a workflow activation's 2 s budget (tests/conftest.py, pytest_collection_finish).
    gc.collect()
    gc.freeze()
    await run_conductor(settings, stop)


@app.command()
def dev(
    temporal_port: Annotated[int, typer.Option(help="Temporal frontend port.")] = 7233,
    ui_port: Annotated[int, typer.Option(help="Temporal Web UI port.")] = 8233,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Start a Temporal dev server (SQLite under the state dir, Web UI), worker, gateway and launcher."""
    from conductor_worker.process.devserver import DevServer

    _setup_logging(verbose)
    settings = Settings()
    server = DevServer(settings.state_dir, port=temporal_port, ui_port=ui_port)
    server.start()
    settings = settings.model_copy(
        update={
            "temporal_address": server.address,
            "temporal_ui_url": f"http://localhost:{ui_port}",
        }
    )
    typer.echo(f"Temporal dev server on {server.address}, Web UI {settings.temporal_ui_url}")
    try:
        asyncio.run(_serve_until_signalled(settings))
    finally:
        server.stop()


@app.command()
def serve(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    """Run worker, gateway and intake against the configured Temporal cluster (production)."""
    from conductor_worker.config import TokenSecretMissing

    _setup_logging(verbose)
    settings = Settings()
    try:
        settings.check_token_secret()
    except TokenSecretMissing as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from err
    asyncio.run(_serve_until_signalled(settings))


@app.command()
def send(
    files: Annotated[list[Path], typer.Argument(help="JSON message bodies to send.", exists=True)],
) -> None:
    """Send message bodies (e.g. Jira issue JSON) to the configured SQS queue."""
    from conductor_worker.process.app import sqs_client

    settings = Settings()
    if not settings.sqs_queue_url:
        raise typer.BadParameter("set CONDUCTOR_SQS_QUEUE_URL to the intake queue's URL")
    sqs = sqs_client(settings)
    for path in files:
        sent = sqs.send_message(QueueUrl=settings.sqs_queue_url, MessageBody=path.read_text())
        typer.echo(f"sent {path} as message {sent['MessageId']}")


@app.command()
def simulate(
    scenario: Annotated[
        Path,
        typer.Argument(help="Scenario: .yaml/.json (timed messages) or .jsonl.", exists=True, dir_okay=False),
    ],
    routes: Annotated[
        Path | None,
        typer.Option(
            help="Routes file (default: the scenario's `routes`, else one catch-all route).", exists=True
        ),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Run a scenario through the real workflows in simulated time; print each job the conductor starts.

    SCENARIO .yaml/.json: timed messages, raw SQS bodies or ticket/alarm shorthand (examples/scenarios/).
    SCENARIO .jsonl: one SQS message body per line, delivered in file order 100 ms of simulated time apart.
    No agent starts: a recorder stands in for the launcher and the publishers.
    """
    from conductor_worker.simulation.report import render_table
    from conductor_worker.simulation.run import SimulationStuck
    from conductor_worker.simulation.scenario import ScenarioError, load_scenario
    from conductor_worker.simulation.simulate import simulate as run_scenario

    # A job failing (no route, a failing agent) is a decision to report, not a traceback to print.
    logging.getLogger("temporalio").setLevel(logging.ERROR)
    try:
        report = asyncio.run(run_scenario(load_scenario(scenario), routes, Settings()))
    except (ScenarioError, FileNotFoundError) as err:  # a bad file, or no temporal-test-server installed
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from err
    except SimulationStuck as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from err
    typer.echo(report.model_dump_json(indent=2) if json_output else render_table(report))


@app.command("run-script")
def run_script_command(
    script: Annotated[str, typer.Argument(help="Shell script text, run with /bin/sh -c by the agent.")],
    capability: Annotated[
        str, typer.Option(help="Only agents registered with it may run the task.")
    ] = "shell",
    timeout: Annotated[float, typer.Option(help="Seconds the script may run.", min=0.001)] = 600,
    queue_timeout: Annotated[
        float, typer.Option(help="Seconds to wait for an agent to claim it.", min=0.001)
    ] = 600,
    task_id: Annotated[str | None, typer.Option(help="Default: a new uuid.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the ScriptResult as JSON.")] = False,
) -> None:
    """Run a script on a pool agent and print its result (README "Pool agents and the REST API").

    The script's stdout and stderr go to ours, then one summary line to stderr. Exit code: 0 when it
    completed, the script's own code when it failed (128+N if killed by signal N), 124 when it timed
    out, 69 when no agent took it or its agents were lost.
    """
    from conductor_worker.commands.hard_exit import hard_exit
    from conductor_worker.pool_api.run_script import exit_code_for, run_script, summary_line
    from conductor_worker.process.client import connect

    settings = Settings()

    async def run():
        client = await connect(settings)
        return await run_script(
            client,
            script,
            capability,
            timeout,
            task_id=task_id,
            task_queue=settings.task_queue,
            queue_timeout=queue_timeout,
        )

    result = asyncio.run(run())
    if json_output:
        typer.echo(result.model_dump_json(indent=2))
    else:
        typer.echo(result.stdout, nl=False)
        typer.echo(result.stderr, nl=False, err=True)
        typer.echo(summary_line(result), err=True)
    # Not typer.Exit: interpreter teardown can abort while the SDK's client threads live, and the exit
    # code is the result (see hard_exit).
    hard_exit(exit_code_for(result))


@app.command()
def doctor(
    limit: Annotated[int, typer.Option(help="Running workflows examined at most.", min=1)] = 1000,
    all_queues: Annotated[
        bool, typer.Option("--all-queues", help="Every task queue, not only the conductor's own.")
    ] = False,
) -> None:
    """List what is stuck: workflows whose task keeps failing, claims held by closed jobs, jobs waiting
    for a claim that does not list them. Exit code 1 when anything is found."""
    from conductor_worker.commands.doctor import diagnose
    from conductor_worker.commands.hard_exit import hard_exit
    from conductor_worker.process.client import connect

    settings = Settings()

    async def run():
        task_queue = None if all_queues else settings.task_queue
        return await diagnose(await connect(settings), limit=limit, task_queue=task_queue)

    findings = asyncio.run(run())
    for finding in findings:
        typer.echo(finding.line())
    typer.echo(f"{len(findings)} finding(s)" if findings else "nothing stuck", err=True)
    hard_exit(1 if findings else 0)


def main() -> None:
    app()
