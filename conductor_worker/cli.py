"""`conductor`: run the conductor (`dev`, `serve`), feed it (`send`), and rehearse it (`simulate`)."""

import asyncio
import logging
import signal
from pathlib import Path
from typing import Annotated

import typer

from conductor_worker.config import Settings
from conductor_worker.search_attributes_cli import app as search_attributes_app

app = typer.Typer(
    help="Agent Conductor: tickets -> durable coding-agent jobs on Temporal.", no_args_is_help=True
)
app.add_typer(search_attributes_app, name="search-attributes")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


async def _serve_until_signalled(settings: Settings) -> None:
    from conductor_worker.app import run_conductor

    stop = asyncio.Event()

    def drain(sig: signal.Signals) -> None:
        # A deploy's SIGTERM drains like the shutdown flag file does (conductor_worker/drain.py).
        logging.getLogger(__name__).info("%s received: draining", sig.name)
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, drain, sig)
    await run_conductor(settings, stop)


@app.command()
def dev(
    temporal_port: Annotated[int, typer.Option(help="Temporal frontend port.")] = 7233,
    ui_port: Annotated[int, typer.Option(help="Temporal Web UI port.")] = 8233,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Start a Temporal dev server (SQLite under the state dir, Web UI), worker, gateway and launcher."""
    from conductor_worker.devserver import DevServer

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
    _setup_logging(verbose)
    asyncio.run(_serve_until_signalled(Settings()))


@app.command()
def send(
    files: Annotated[list[Path], typer.Argument(help="JSON message bodies to send.", exists=True)],
) -> None:
    """Send message bodies (e.g. Jira issue JSON) to the configured SQS queue."""
    from conductor_worker.app import sqs_client

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
    from conductor_worker.scenario import ScenarioError, load_scenario
    from conductor_worker.simulate import simulate as run_scenario
    from conductor_worker.simulation_report import render_table

    # A job failing (no route, a failing agent) is a decision to report, not a traceback to print.
    logging.getLogger("temporalio").setLevel(logging.ERROR)
    try:
        report = asyncio.run(run_scenario(load_scenario(scenario), routes, Settings()))
    except (ScenarioError, FileNotFoundError) as err:  # a bad file, or no temporal-test-server installed
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from err
    typer.echo(report.model_dump_json(indent=2) if json_output else render_table(report))


def main() -> None:
    app()
