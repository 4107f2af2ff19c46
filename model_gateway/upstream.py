"""The provider client: one request, retried while nothing has reached the agent yet.

A 429 or 5xx answer, or a connection that fails before the answer's headers, is retried with exponential
backoff, waiting what `Retry-After` says when the provider says it (capped). Once the answer's first byte
has gone to the agent, nothing is retried: the agent's CLI sees the provider's answer as it came.
"""

import asyncio
import email.utils
import logging
import random
import socket
import time
from dataclasses import dataclass

import httpx

from model_gateway.providers import Provider

log = logging.getLogger(__name__)

RETRIED_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
_FIRST_BACKOFF_SECONDS = 0.5


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    max_wait_seconds: float = 30.0


@dataclass
class UpstreamAnswer:
    """The provider's answer, headers read, body not yet: stream it, then close it."""

    response: httpx.Response | None
    retries: int
    # Set when no answer came at all (connection failures to the end): the agent gets a 502 with it.
    error: str = ""


class Upstream:
    def __init__(self, policy: RetryPolicy, client: httpx.AsyncClient | None = None) -> None:
        self._policy = policy
        # Long reads: a model may think for minutes between two events. TCP_NODELAY: the request's headers
        # and body go out as separate writes, and Nagle would hold the body for the peer's delayed ACK (40 ms).
        self._client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(10.0, read=600.0),
            transport=httpx.AsyncHTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]),
            trust_env=False,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def open(
        self, provider: Provider, query: str, headers: dict[str, str], body: bytes
    ) -> UpstreamAnswer:
        url = provider.upstream_url(query)
        upstream_headers = provider.upstream_headers(headers)
        error = ""
        for attempt in range(self._policy.attempts):
            last = attempt == self._policy.attempts - 1
            request = self._client.build_request("POST", url, headers=upstream_headers, content=body)
            try:
                response = await self._client.send(request, stream=True)
            except httpx.TransportError as err:
                error = f"{provider.name} upstream unreachable: {type(err).__name__}: {err}"
                wait = None
            else:
                if response.status_code not in RETRIED_STATUSES or last:
                    return UpstreamAnswer(response, retries=attempt)
                wait = retry_after_seconds(response.headers.get("retry-after"))
                error = f"{provider.name} upstream answered {response.status_code}"
                await response.aclose()
            if last:
                break
            delay = self._delay(attempt, wait)
            log.info("%s; retry %d in %.1fs", error, attempt + 1, delay)
            await asyncio.sleep(delay)
        return UpstreamAnswer(None, retries=self._policy.attempts - 1, error=error)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self._policy.max_wait_seconds)
        backoff = _FIRST_BACKOFF_SECONDS * 2**attempt
        return min(backoff * (0.5 + random.random() / 2), self._policy.max_wait_seconds)


def retry_after_seconds(value: str | None) -> float | None:
    """`Retry-After` as seconds: a number of seconds, or an HTTP date."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)
