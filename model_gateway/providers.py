"""The two model APIs the gateway serves, and where each answer states its usage."""

from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr

from contracts.usage import ModelUsage

# Request headers the provider needs from the CLI; everything else (above all its Authorization, the job
# token) stays here.
_PASSED_REQUEST_HEADERS = ("content-type", "accept", "openai-beta", "anthropic-version", "anthropic-beta")


@dataclass(frozen=True)
class Provider:
    name: str
    route: str  # on the gateway, e.g. /v1/responses
    upstream_path: str  # appended to the provider's base URL, e.g. /responses
    base_url: str
    api_key: SecretStr
    # How the provider takes its key: `authorization` (Bearer), `api-key` (Azure OpenAI) or `x-api-key`.
    key_header: str

    def upstream_url(self, query: str) -> str:
        return self.base_url.rstrip("/") + self.upstream_path + (f"?{query}" if query else "")

    def upstream_headers(self, request_headers: dict[str, str]) -> dict[str, str]:
        headers = {name: request_headers[name] for name in _PASSED_REQUEST_HEADERS if name in request_headers}
        key = self.api_key.get_secret_value()
        if key:
            headers[self.key_header] = f"Bearer {key}" if self.key_header == "authorization" else key
        return headers

    def usage_reader(self) -> "UsageReader":
        return OpenAiUsage() if self.name == "openai" else AnthropicUsage()


@dataclass
class UsageReader:
    """Watches one answer's events; `usage` once its final event has passed, `completed` if it did."""

    usage: ModelUsage = field(default_factory=lambda: ModelUsage(requests=1))
    completed: bool = False
    # The model that answered, as the answer names it: the price table's key.
    model: str = ""

    def observe(self, event: dict[str, Any]) -> None:
        raise NotImplementedError


class OpenAiUsage(UsageReader):
    # `response.completed` carries the whole response with its usage; failed and incomplete ones may too.
    _FINAL = ("response.completed", "response.incomplete", "response.failed")

    def observe(self, event: dict[str, Any]) -> None:
        if event.get("type") not in self._FINAL:
            return
        self.completed = event["type"] == "response.completed"
        response = event.get("response") or {}
        self.model = str(response.get("model") or "")
        usage = response.get("usage") or {}
        self.usage = ModelUsage(
            requests=1,
            input_tokens=int(usage.get("input_tokens") or 0),
            cached_input_tokens=int((usage.get("input_tokens_details") or {}).get("cached_tokens") or 0),
            output_tokens=int(usage.get("output_tokens") or 0),
        )


class AnthropicUsage(UsageReader):
    # `message_start` states the input; `message_delta` the (cumulative) output, sometimes the input again.
    def observe(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message") or {}
            self.model = str(message.get("model") or "")
            self._update(message.get("usage") or {})
        elif kind == "message_delta":
            self._update(event.get("usage") or {})
        elif kind == "message_stop":
            self.completed = True

    def _update(self, usage: dict[str, Any]) -> None:
        current = self.usage
        self.usage = ModelUsage(
            requests=1,
            input_tokens=int(usage.get("input_tokens") or current.input_tokens),
            cached_input_tokens=int(usage.get("cache_read_input_tokens") or current.cached_input_tokens),
            output_tokens=int(usage.get("output_tokens") or current.output_tokens),
        )


def providers(settings) -> list[Provider]:
    """The OpenAI-compatible and Anthropic upstreams as configured (conductor_worker/config.py, `model_*`)."""
    return [
        Provider(
            name="openai",
            route="/v1/responses",
            upstream_path="/responses",
            base_url=settings.model_openai_url,
            api_key=settings.model_openai_api_key,
            key_header=settings.model_openai_key_header,
        ),
        Provider(
            name="anthropic",
            route="/v1/messages",
            upstream_path="/messages",
            base_url=settings.model_anthropic_url,
            api_key=settings.model_anthropic_api_key,
            key_header="x-api-key",
        ),
    ]
