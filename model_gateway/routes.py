"""The model gateway's routes: authorize the job token, forward, stream the answer back, count its usage.

Each request ends in one log line: job, attempt, API, status, tokens, time to first byte, latency, retries.
"""

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from temporalio.client import Client
from temporalio.common import MetricMeter

from conductor_worker.metrics import ModelGatewayMetrics, client_meter
from contracts.ids import job_kind
from contracts.usage import ModelPrice, priced
from model_gateway.access import attempt_for_model_call, token_from_headers
from model_gateway.budget import BudgetGate
from model_gateway.delivery import SteeringDeliveries
from model_gateway.providers import Provider, UsageReader, providers
from model_gateway.sse import SseReader
from model_gateway.steering import steer_request
from model_gateway.upstream import RetryPolicy, Upstream, UpstreamAnswer
from model_gateway.usage import UsageLedger
from security.tokens import TokenError
from stores.attempts import StagedAttempts
from stores.job_store import JobAttemptDir
from stores.mailbox import JobMailbox
from stores.usage_store import AttemptUsageStore

log = logging.getLogger(__name__)

# A model request carries the conversation so far; codex sends about 1 MB for a 900 KB prompt.
MAX_REQUEST_BYTES = 32 << 20
# Answer headers passed back to the CLI besides the body's content type.
_PASSED_RESPONSE_HEADERS = ("retry-after", "request-id", "x-request-id", "openai-processing-ms")


def router_from_settings(
    settings, client: Client | None = None, meter: MetricMeter | None = None
) -> tuple[APIRouter, Upstream]:
    """The routes for the conductor's HTTP server, and the upstream client to close when it stops.
    Metrics go to `meter`, by default the client's runtime's (conductor_worker/metrics.py)."""
    upstream = Upstream(RetryPolicy(settings.model_retry_attempts, settings.model_retry_max_wait_seconds))
    # A held request waits at most as long as the longest approval window, and a little more.
    longest_window = max(p.approval_window_seconds for p in settings.job_policies().values())
    attempts = StagedAttempts(settings.open_blob_store())
    ledger = UsageLedger(AttemptUsageStore(attempts.blobs))
    meter = meter or (client_meter(client) if client is not None else None)
    metrics = ModelGatewayMetrics(meter) if meter is not None else None
    router = model_gateway_router(
        providers(settings),
        upstream,
        ledger,
        BudgetGate(client, longest_window + 60, ledger),
        attempts,
        settings.jobs_dir,
        settings.signing_secret(),
        settings.model_prices,
        metrics,
        client,
    )
    return router, upstream


def model_gateway_router(
    providers: list[Provider],
    upstream: Upstream,
    ledger: UsageLedger,
    budget: BudgetGate,
    attempts: StagedAttempts,
    jobs_dir,
    secret: bytes,
    prices: dict[str, ModelPrice] | None = None,
    metrics: ModelGatewayMetrics | None = None,
    client: Client | None = None,
) -> APIRouter:
    router = APIRouter(tags=["model gateway"])
    mailbox = JobMailbox(attempts.blobs)
    deliveries = SteeringDeliveries(client, mailbox)

    def route(provider: Provider):
        async def forward(request: Request) -> Response:
            started = time.monotonic()
            headers = {k.lower(): v for k, v in request.headers.items()}
            try:
                access = await attempt_for_model_call(attempts, jobs_dir, secret, token_from_headers(headers))
            except TokenError as err:
                log.warning("model gateway refused a %s request: %s", provider.name, err)
                return _error(provider, 401, f"conductor model gateway: {err}")
            body = await _bounded_body(request)
            if body is None:
                return _error(provider, 413, f"request larger than {MAX_REQUEST_BYTES} bytes")
            refused = await budget.admit(access, request.is_disconnected)
            if refused:
                log.warning("model gateway refused a request of %s: %s", access.job.job_id, refused)
                return _error(provider, 403, f"conductor model gateway: {refused}")
            body, carried = await asyncio.to_thread(
                steer_request, provider.name, access.claims.job_id, mailbox, body
            )
            deliveries.carried(access.claims.job_id, access.claims.attempt, carried)
            answer = await upstream.open(provider, request.url.query, headers, body)
            call = _Call(provider, access.job, ledger, started, answer.retries, prices or {}, metrics)
            if answer.response is None:
                call.done(502, None)
                return _error(provider, 502, f"conductor model gateway: {answer.error}")
            return StreamingResponse(
                call.relay(answer),
                status_code=answer.response.status_code,
                headers={
                    k: v for k, v in answer.response.headers.items() if k.lower() in _PASSED_RESPONSE_HEADERS
                },
                media_type=answer.response.headers.get("content-type", "text/event-stream"),
            )

        forward.__name__ = f"forward_{provider.name}"
        forward.__doc__ = (
            f"{provider.name} API, forwarded to the configured upstream with the conductor's key."
        )
        return forward

    for provider in providers:
        router.add_api_route(provider.route, route(provider), methods=["POST"])
    return router


class _Call:
    """One forwarded request: relays the answer's bytes, reads its usage on the way, logs and counts at the end."""

    def __init__(
        self,
        provider: Provider,
        job: JobAttemptDir,
        ledger: UsageLedger,
        started: float,
        retries: int,
        prices: dict[str, ModelPrice],
        metrics: ModelGatewayMetrics | None,
    ) -> None:
        self.provider, self.job, self.ledger, self.prices = provider, job, ledger, prices
        self.metrics = metrics
        self.started, self.retries = started, retries
        self.first_byte_at: float | None = None

    async def relay(self, answer: UpstreamAnswer) -> AsyncIterator[bytes]:
        response = answer.response
        assert response is not None
        reader, sse = self.provider.usage_reader(), SseReader()
        cut = ""
        try:
            async for chunk in response.aiter_raw():
                if self.first_byte_at is None:
                    self.first_byte_at = time.monotonic()
                for event in sse.feed(chunk):
                    reader.observe(event)
                yield chunk
        except httpx.HTTPError as err:
            # The provider dropped the stream mid-way: the agent's CLI sees its answer end unfinished.
            cut = f"{type(err).__name__}: {err}"
        finally:
            await response.aclose()
            await self._finish(response.status_code, reader, cut)

    async def _finish(self, status: int, reader: UsageReader, cut: str) -> None:
        if 200 <= status < 300:
            reader.usage = priced(reader.usage, reader.model, self.prices)
            self.ledger.add_later(self.job, reader.usage)
        self.done(status, reader, cut)

    def done(self, status: int, reader: UsageReader | None, cut: str = "") -> None:
        usage = reader.usage if reader else None
        now = time.monotonic()
        if self.metrics is not None:
            self.metrics.request(self.provider.name, status, now - self.started)
            if usage is not None:
                self.metrics.tokens(job_kind(self.job.job_id), usage.input_tokens, usage.output_tokens)
        log.log(
            logging.WARNING if cut or status >= 400 else logging.INFO,
            "model request: job %s attempt %d %s %s status %d%s input %d (cached %d) output %d tokens, "
            "$%.6f; first byte %s, latency %.0f ms, %d retries%s",
            self.job.job_id,
            self.job.attempt,
            self.provider.name,
            (reader.model if reader else "") or "-",
            status,
            "" if reader is None or reader.completed else " (unfinished)",
            usage.input_tokens if usage else 0,
            usage.cached_input_tokens if usage else 0,
            usage.output_tokens if usage else 0,
            usage.cost_usd if usage else 0.0,
            f"{(self.first_byte_at - self.started) * 1000:.0f} ms" if self.first_byte_at else "-",
            (now - self.started) * 1000,
            self.retries,
            f"; stream cut: {cut}" if cut else "",
        )


async def _bounded_body(request: Request) -> bytes | None:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_REQUEST_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _error(provider: Provider, status: int, message: str) -> JSONResponse:
    """An error in the provider's own shape, so the CLI shows it as it shows the provider's."""
    if provider.name == "anthropic":
        kind = {401: "authentication_error", 403: "permission_error", 413: "request_too_large"}.get(
            status, "api_error"
        )
        return JSONResponse(
            {"type": "error", "error": {"type": kind, "message": message}}, status_code=status
        )
    kind = {401: "invalid_api_key", 403: "insufficient_quota", 413: "request_too_large"}.get(
        status, "server_error"
    )
    return JSONResponse({"error": {"message": message, "type": kind, "code": kind}}, status_code=status)
