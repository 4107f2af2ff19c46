"""`conductor logs JOB [--follow] [--attempt N] [--events]`: a job's agent log, from the log store.

`--events` prints only the coding agent's events (contracts/agent_events.py), e.g.
`12:00:03 file_change: add [docs/ENG-123.md]`.

Lines are the agent's own progress lines and its steps' stdout/stderr, in the order the agent produced
them. `--follow` keeps printing until the attempt's log is complete (the agent's last line, "exiting
with code N", is stored) or Ctrl-C; without `--attempt` it moves on to a relaunched agent's attempt.
"""

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated

import typer

from conductor_worker.config import Settings
from conductor_worker.gateway.log_store import LogStore, dropped_note, open_log_store
from contracts.agent_events import event_from_log_text

FOLLOW_POLL_SECONDS = 0.5


def print_log(
    store: LogStore,
    job_id: str,
    attempt: int | None = None,
    *,
    follow: bool = False,
    events: bool = False,
    echo: Callable[..., None] = typer.echo,
    poll_seconds: float = FOLLOW_POLL_SECONDS,
) -> int:
    """Print the log; returns the exit code (1: no log for the job)."""
    pinned = attempt is not None
    while attempt is None:
        attempts = store.attempts(job_id)
        if attempts:
            attempt = attempts[-1]
        elif follow:
            time.sleep(poll_seconds)  # the agent has not sent its first line yet
        else:
            echo(f"no log for {job_id!r} (job ids look like job/ticket/jira/ENG-123)", err=True)
            return 1
    echo(f"== {job_id} attempt {attempt}", err=True)
    after = 0
    while True:
        # Both checked before reading, so lines stored just before either happened are still printed.
        complete = store.is_complete(job_id, attempt)
        newer = [] if pinned or complete else [a for a in store.attempts(job_id) if a > attempt]
        for line in store.read(job_id, attempt, after):
            after = line.seq
            if not events:
                echo(line.render())
            elif event := event_from_log_text(line.text):
                at = datetime.fromtimestamp(line.ts, UTC).strftime("%H:%M:%S")
                echo(f"{at} {event.render()}")
        if complete or not follow:
            dropped = store.dropped(job_id, attempt)
            if dropped.count:
                echo(dropped_note(dropped).render(), err=True)
            return 0
        if newer:
            # The job relaunched its agent: the earlier one is gone and its log ends here.
            attempt, after = newer[0], 0
            echo(f"== {job_id} attempt {attempt}", err=True)
            continue
        time.sleep(poll_seconds)


def logs(
    job: Annotated[str, typer.Argument(help="Job id, e.g. job/ticket/jira/ENG-123.")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing until the agent's last line, or Ctrl-C.")
    ] = False,
    attempt: Annotated[int | None, typer.Option(help="Agent attempt (default: the latest).", min=1)] = None,
    events: Annotated[
        bool,
        typer.Option("--events", help="Only the coding agent's events: messages, commands, file changes."),
    ] = False,
) -> None:
    """Print a job's agent log: its steps' output and the agent's own lines, oldest first."""
    store = open_log_store(Settings())
    try:
        code = print_log(store, job, attempt, follow=follow, events=events)
    except KeyboardInterrupt:
        code = 130
    raise typer.Exit(code)
