"""`conductor dlq list|show|redrive`: what the intake dead-lettered, and why; send it back when fixed.

The DLQ is CONDUCTOR_SQS_DLQ_URL, else the one the intake queue's RedrivePolicy names; messages are
redriven to CONDUCTOR_SQS_QUEUE_URL. See conductor_worker/intake/dlq.py for how listing and redrive work on SQS.
"""

from typing import Annotated

import typer

from conductor_worker.config import Settings
from conductor_worker.intake.dlq import DeadLetterQueue, find_dlq

app = typer.Typer(help="Inspect and redrive the intake's dead-letter queue.", no_args_is_help=True)


def _open() -> DeadLetterQueue:
    from conductor_worker.process.app import sqs_client

    settings = Settings()
    if not settings.sqs_queue_url:
        raise typer.BadParameter("set CONDUCTOR_SQS_QUEUE_URL to the intake queue's URL")
    sqs = sqs_client(settings)
    dlq_url = find_dlq(sqs, settings.sqs_queue_url, settings.sqs_dlq_url)
    if dlq_url is None:
        raise typer.BadParameter(
            "the intake queue has no RedrivePolicy: set CONDUCTOR_SQS_DLQ_URL to its dead-letter queue"
        )
    return DeadLetterQueue(sqs, dlq_url, settings.sqs_queue_url)


@app.command("list")
def list_command() -> None:
    """One line per message: id, receive count, reason, the first bytes of the body."""
    dlq = _open()
    letters = dlq.receive_all()
    try:
        for d in letters:
            typer.echo(f"{d.message_id}  receives={d.receive_count}  {d.why}\n    {d.preview}")
        typer.echo(f"{len(letters)} messages in {dlq.url}", err=True)
    finally:
        dlq.release(letters)


@app.command()
def show(message_id: Annotated[str, typer.Argument(help="A message id from `conductor dlq list`.")]) -> None:
    """The whole message: its attributes, then its body as it arrived."""
    dlq = _open()
    letters = dlq.receive_all()
    try:
        found = next((d for d in letters if d.message_id == message_id), None)
        if found is None:
            typer.echo(f"no message {message_id} in {dlq.url}", err=True)
            raise typer.Exit(1)
        typer.echo(f"message id:      {found.message_id}")
        typer.echo(f"reason:          {found.why}")
        typer.echo(f"source message:  {found.source_message_id or '-'}")
        typer.echo(f"receives:        {found.receive_count}")
        typer.echo(f"body ({len(found.body)} characters):")
        typer.echo(found.body)
    finally:
        dlq.release(letters)


@app.command()
def redrive(
    message_ids: Annotated[list[str] | None, typer.Argument(help="Message ids to send back.")] = None,
    all_messages: Annotated[bool, typer.Option("--all", help="Send back every message.")] = False,
) -> None:
    """Send messages back to the intake queue (then delete them from the DLQ).

    Safe to repeat: a ticket's workflow id makes a second copy the same job. A message that is still
    poison comes back to the DLQ with its reason.
    """
    if bool(message_ids) == all_messages:
        raise typer.BadParameter("give message ids or --all (not both)")
    dlq = _open()
    letters = dlq.receive_all()
    chosen = letters if all_messages else [d for d in letters if d.message_id in set(message_ids or [])]
    missing = set(message_ids or []) - {d.message_id for d in chosen}
    try:
        for d in chosen:
            new_id = dlq.redrive(d)
            typer.echo(f"redriven {d.message_id} -> {new_id}")
    finally:
        dlq.release([d for d in letters if d not in chosen])
    typer.echo(f"{len(chosen)} messages sent back to {dlq.source_url}", err=True)
    if missing:
        typer.echo(f"not in the DLQ: {', '.join(sorted(missing))}", err=True)
        raise typer.Exit(1)
