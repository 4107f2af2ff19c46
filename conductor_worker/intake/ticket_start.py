"""Starting a ticket's workflow: the one call every intake (SQS, webhooks, simulation) makes for a ticket.

One workflow per ticket id, so a redelivered or duplicate message finds the run it started: a running one
is joined, a finished one is not redone.
"""

import asyncio
from datetime import timedelta

from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from contracts.ids import ticket_workflow_id
from contracts.tickets import TicketMessage
from stores.blob_store import BlobStore
from workflows.ticket import TicketWorkflow

# A start that gets no answer in this long counts as Temporal being unreachable.
START_RPC_TIMEOUT = timedelta(seconds=10)


async def start_ticket(
    client: Client, task_queue: str, ticket: TicketMessage, blobs: BlobStore | None = None
) -> bool:
    """True: started, or joined the running workflow. False: the ticket was handled before (its workflow
    has finished), so nothing was started. Raises what the start raised otherwise.

    A description the ticket had to cut (contracts/tickets.py) goes whole to `blobs`; the payload carries
    the cut text and the blob's reference, and the agent's prompt gets all of it."""
    if blobs is not None and ticket.description_was_cut:
        blob = await asyncio.to_thread(blobs.put_text, ticket.whole_description)
        ticket = ticket.model_copy(update={"description_blob": blob})
    try:
        await client.start_workflow(
            TicketWorkflow.run,
            ticket,
            id=ticket_workflow_id(ticket.source, ticket.key),
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            rpc_timeout=START_RPC_TIMEOUT,
        )
    except WorkflowAlreadyStartedError:
        return False
    return True
