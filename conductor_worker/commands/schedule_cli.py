"""`conductor schedule create|list|pause|unpause|delete`: recurring agent jobs on Temporal Schedules.

Each run is an ordinary job (`job/schedule/<name>/<scheduled time>`) on a branch of its own, found in the
Web UI by `ConductorJobKind = 'scheduled'`. `temporal schedule trigger --schedule-id schedule/<name>` runs
one now; `temporal schedule describe` shows its recent runs. Each command ends by `hard_exit` after its last
client call (conductor_worker/commands/hard_exit.py).
"""

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from conductor_worker.commands.hard_exit import hard_exit
from conductor_worker.commands.schedules import (
    ScheduleError,
    create_schedule,
    delete_schedule,
    find_route,
    list_schedules,
    pause_schedule,
    unpause_schedule,
)
from conductor_worker.config import Settings
from contracts.schedules import PROMPT_LIMIT, ScheduledJob

app = typer.Typer(help="Recurring agent jobs on Temporal Schedules.", no_args_is_help=True)

Name = Annotated[str, typer.Argument(help="The schedule's name: lowercase letters, digits and dashes.")]


def _run(call):
    """Run one client call against the conductor's Temporal; a refusal is one line and exit code 1."""
    from conductor_worker.process.client import connect

    async def run():
        return await call(await connect(Settings()))

    try:
        return asyncio.run(run())
    except ScheduleError as err:
        typer.echo(f"error: {err}", err=True)
        hard_exit(1)


@app.command()
def create(
    name: Name,
    cron: Annotated[
        str, typer.Option(help='When to run, e.g. "0 6 * * MON" (minute hour day month weekday).')
    ],
    route: Annotated[str, typer.Option(help="The `name` of a route in the routes file: the repository.")],
    prompt_file: Annotated[Path, typer.Option(help="The task for the agent, in Markdown.", exists=True)],
    summary: Annotated[str, typer.Option(help="One line for PRs and the Web UI; default: the name.")] = "",
    time_zone: Annotated[str, typer.Option(help="IANA time zone the cron expression is read in.")] = "UTC",
    paused: Annotated[bool, typer.Option(help="Create it paused (`unpause` starts it).")] = False,
) -> None:
    """Create a schedule that starts an agent job on a route at every time the cron expression names."""
    from activities.routing import load_routes

    settings = Settings()
    if prompt_file.stat().st_size > PROMPT_LIMIT:
        raise typer.BadParameter(f"{prompt_file} is over {PROMPT_LIMIT} bytes", param_hint="--prompt-file")
    try:
        repo = find_route(load_routes(settings.routes_file), route)
        job = ScheduledJob(
            name=name,
            summary=summary or name,
            prompt=prompt_file.read_text(),
            route=repo,
            policy=repo.policy_for(settings.scheduled_policy),
        )
    except ScheduleError as err:
        raise typer.BadParameter(str(err), param_hint="--route") from None
    except ValidationError as err:
        raise typer.BadParameter("; ".join(e["msg"] for e in err.errors())) from None
    _run(lambda client: create_schedule(client, settings, job, cron, time_zone, paused))
    typer.echo(f"created schedule/{name}: {cron} ({time_zone}) on {repo.name}{', paused' if paused else ''}")
    hard_exit(0)


@app.command("list")
def list_command() -> None:
    """One line per schedule: name, cron expression, active or paused, next run."""
    rows = _run(list_schedules)
    for row in rows:
        typer.echo(row.line())
    typer.echo(f"{len(rows)} schedule(s)", err=True)
    hard_exit(0)


@app.command()
def pause(
    name: Name, note: Annotated[str, typer.Option(help="Why; shown by `list`.")] = "paused by conductor"
) -> None:
    """Stop starting runs until `unpause` (a run already going goes on)."""
    _run(lambda client: pause_schedule(client, name, note))
    typer.echo(f"paused schedule/{name}")
    hard_exit(0)


@app.command()
def unpause(name: Name) -> None:
    """Start runs again at the next time the cron expression names."""
    _run(lambda client: unpause_schedule(client, name, "unpaused by conductor"))
    typer.echo(f"unpaused schedule/{name}")
    hard_exit(0)


@app.command()
def delete(name: Name) -> None:
    """Remove the schedule (runs already started go on to their end)."""
    _run(lambda client: delete_schedule(client, name))
    typer.echo(f"deleted schedule/{name}")
    hard_exit(0)
