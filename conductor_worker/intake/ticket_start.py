"""Starting a ticket's workflow: the one call every intake (SQS, webhooks, simulation) makes for a ticket.

One workflow per ticket id, so a redelivered or duplicate message finds the run it started: a running one
is joined, a finished one is not redone.
"""

import asyncio
from datetime import timedelta
from enum import StrEnum

from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from contracts.ids import ticket_workflow_id
from contracts.tickets import TicketMessage
from stores.blob_store import BlobStore
from workflows.ticket import TicketWorkflow

# A start that gets no answer in this long counts as Temporal being unreachable.
START_RPC_TIMEOUT = timedelta(seconds=10)


class TicketStart(StrEnum):
    """What a ticket's start did."""

    STARTED = "started"
    ALREADY_RUNNING = "already running"  # a copy of a message already taken (SQS delivers at least once)
    ALREADY_HANDLED = "already handled"  # its workflow has finished: nothing redone


async def start_ticket(
    client: Client, task_queue: str, ticket: TicketMessage, blobs: BlobStore | None = None
) -> TicketStart:
    """Start the ticket's workflow, or find the one it has; raises what the start raised otherwise.

    A description the ticket had to cut (contracts/tickets.py) goes whole to `blobs`; the payload carries
    the cut text and the blob's reference, and the agent's prompt gets all of it."""
    if blobs is not None and ticket.description_was_cut:
        blob = await asyncio.to_thread(blobs.put_text, ticket.whole_description)
        ticket = ticket.model_copy(update={"description_blob": blob})
    try:
        handle = await client.start_workflow(
            TicketWorkflow.run,
            ticket,
            id=ticket_workflow_id(ticket.source, ticket.key),
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            rpc_timeout=START_RPC_TIMEOUT,
        )
    except WorkflowAlreadyStartedError:
        return TicketStart.ALREADY_HANDLED
    # The server says whether this call started the run or found it running (USE_EXISTING); the SDK keeps
    # its answer only on the handle's private response. Without it, count a start (what we asked for).
    response = getattr(handle, "_start_workflow_response", None)
    return (
        TicketStart.ALREADY_RUNNING if response is not None and not response.started else TicketStart.STARTED
    )
