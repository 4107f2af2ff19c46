"""Webhook intake on the conductor's HTTP server: GitHub `issues` events and Jira issue events.

    POST /webhooks/github   X-Hub-Signature-256: sha256=<HMAC-SHA256 of the body, the webhook secret>
    POST /webhooks/jira     X-Hub-Signature: sha256=<the same, with the Jira webhook's secret>

The same guarantees as the SQS intake. A 2xx only once Temporal has taken the start (or found the
ticket's workflow already there): a redelivery (GitHub's same `X-GitHub-Delivery`, Jira's retries) and a
repeated event find the same workflow id, so they make one job. A bad or missing signature is 401 and
nothing is read; a body that is not a ticket is 400 with its reason and one log line; an event of no
interest is 202 and ignored; Temporal unreachable is 503, so the sender (or an operator redelivering
from the webhook's page) tries again. The body's size is bounded by the server's body limit.
"""

import hashlib
import hmac
import logging

from fastapi import APIRouter, Header, HTTPException, Request
from fastapi.responses import JSONResponse
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from conductor_worker.intake.github_issues import issue_event
from conductor_worker.intake.messages import parse_message
from conductor_worker.intake.outage import is_refusal
from conductor_worker.intake.poison import PoisonMessage, load_json
from conductor_worker.intake.ticket_start import START_RPC_TIMEOUT, start_ticket
from contracts.ids import ticket_job_id
from contracts.operator import CancelRequest
from contracts.tickets import TicketMessage
from stores.blob_store import BlobStore

log = logging.getLogger(__name__)


def signature_matches(secret: str, body: bytes, header: str | None) -> bool:
    """`sha256=<hex>` of the raw body, compared in constant time (GitHub's and Jira's scheme)."""
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return bool(header) and hmac.compare_digest(expected, header.strip())


def webhook_router(
    client: Client,
    task_queue: str,
    github_secret: str,
    jira_secret: str,
    trigger_label: str,
    blobs: BlobStore | None = None,
) -> APIRouter:
    """The webhook routes; a source whose secret is empty is not served (404)."""
    router = APIRouter(prefix="/webhooks", tags=["webhooks"])

    async def verified_body(request: Request, secret: str, header: str | None, source: str) -> bytes:
        body = await request.body()
        if not signature_matches(secret, body, header):
            log.warning("%s webhook refused: bad or missing signature (from %s)", source, _peer(request))
            raise HTTPException(401, f"bad or missing {source} webhook signature")
        return body

    async def accepted(ticket: TicketMessage, delivery: str) -> JSONResponse:
        try:
            outcome = await start_ticket(client, task_queue, ticket, blobs)
        except Exception as err:
            if is_refusal(err):  # a definite no, e.g. over a payload limit: sending it again cannot help
                log.error("webhook %s: Temporal refused ticket %s: %s", delivery, ticket.key, err)
                raise HTTPException(400, f"Temporal refused the start: {err}") from err
            log.warning(
                "webhook %s: ticket %s not started, Temporal unavailable: %s", delivery, ticket.key, err
            )
            raise HTTPException(503, f"Temporal unavailable, deliver again: {err}") from err
        log.info("webhook %s: ticket %s %s", delivery, ticket.key, outcome)
        return JSONResponse({"ticket": ticket.key, "outcome": str(outcome)})

    if github_secret:

        @router.post("/github")
        async def github(
            request: Request,
            x_github_event: str = Header(default=""),
            x_github_delivery: str = Header(default="-"),
            x_hub_signature_256: str | None = Header(default=None),
        ) -> JSONResponse:
            """A GitHub App's or repository webhook's `issues` events (content type application/json)."""
            body = await verified_body(request, github_secret, x_hub_signature_256, "GitHub")
            if x_github_event == "ping":
                return JSONResponse({"outcome": "pong"})
            if x_github_event != "issues":
                return _ignored(f"{x_github_event or 'an unnamed'} event is not handled")
            try:
                payload = load_json(body.decode(errors="replace"), "GitHub webhook body")
                if not isinstance(payload, dict):
                    raise PoisonMessage("GitHub webhook body is not a JSON object")
                event = issue_event(payload, trigger_label)
            except PoisonMessage as err:
                log.error("GitHub webhook %s refused: %s", x_github_delivery, err.reason)
                raise HTTPException(400, err.reason) from err
            if event.action == "start":
                return await accepted(event.ticket, x_github_delivery)
            if event.action == "cancel":
                return await _cancel(client, event.ticket, event.reason, x_github_delivery)
            return _ignored(event.reason)

    if jira_secret:

        @router.post("/jira")
        async def jira(request: Request, x_hub_signature: str | None = Header(default=None)) -> JSONResponse:
            """A Jira webhook (System > WebHooks, with a secret): issue created or updated."""
            body = await verified_body(request, jira_secret, x_hub_signature, "Jira")
            delivery = request.headers.get("x-atlassian-webhook-identifier", "-")
            try:
                ticket = parse_message(body.decode(errors="replace"))
            except PoisonMessage as err:
                log.error("Jira webhook %s refused: %s", delivery, err.reason)
                raise HTTPException(400, err.reason) from err
            if not isinstance(ticket, TicketMessage):
                return _ignored("not a Jira issue event")
            return await accepted(ticket, delivery)

    return router


async def _cancel(client: Client, ticket: TicketMessage, reason: str, delivery: str) -> JSONResponse:
    """Cancel the issue's job, if one runs; `retry` (or the label added again) can run it again."""
    job_id = ticket_job_id(ticket.source, ticket.key)
    try:
        await client.get_workflow_handle(job_id).signal(
            "cancel", CancelRequest(by="github", reason=reason), rpc_timeout=START_RPC_TIMEOUT
        )
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:  # no job yet or any more: nothing to cancel
            return _ignored(f"no running job for {ticket.key}")
        raise HTTPException(503, f"Temporal unavailable, deliver again: {err}") from err
    log.info("webhook %s: job %s cancelled (%s)", delivery, job_id, reason)
    return JSONResponse({"ticket": ticket.key, "outcome": "cancel requested"}, status_code=200)


def _ignored(reason: str) -> JSONResponse:
    return JSONResponse({"outcome": "ignored", "reason": reason}, status_code=202)


def _peer(request: Request) -> str:
    return request.client.host if request.client else "?"
