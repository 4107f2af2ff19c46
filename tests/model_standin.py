"""TEST DOUBLE: a scripted stand-in for the model providers, for tests only. Never used by the service.

The providers are unreachable here, so this answers the two APIs the real CLIs call, over SSE the way
the providers do:

    POST /v1/responses   OpenAI Responses (Codex CLI): response.created, response.output_item.done
                         items (`custom_tool_call` apply_patch, `message`), response.completed + usage
    POST /v1/messages    Anthropic Messages (Claude Code): message_start, content_block_*
                         (`tool_use` Write, text), message_delta + usage, message_stop

Each test scripts the answers, one per request, in order:

    with ModelStandin(key="sk-upstream") as model:
        model.script_responses(Fail(429, retry_after=1), codex_patch_turn(patch), codex_message_turn("done"))

A turn is a `Stream` of SSE events (optionally cut after n events: the connection drops mid-stream),
a `Fail` (an HTTP error with the provider's error body and optional Retry-After), or a callable that
builds one from the request body. Once a script is used up, every request gets a plain final message.
Requests must carry the key (`Authorization: Bearer` or `x-api-key`), else 401 as the providers answer.
Every request is kept in `.requests` (path, headers, JSON body) for assertions.
"""

import asyncio
import json
import re
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from tests.standin_server import ThreadedServer

Event = tuple[str, dict[str, Any]]


@dataclass
class Stream:
    events: list[Event]
    # Drop the connection after this many events (no final event): a stream cut mid-way.
    cut_after: int | None = None
    # Seconds between events, so a test can watch them arrive one by one.
    delay: float = 0.0


@dataclass
class Fail:
    status: int
    retry_after: float | None = None
    message: str = "scripted failure"


Turn = Stream | Fail | Callable[[dict[str, Any]], "Stream | Fail"]


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float = 0.0  # time.monotonic() on arrival


@dataclass
class _Script:
    turns: deque = field(default_factory=deque)


# OpenAI Responses ---------------------------------------------------------------------------------------


def _openai_usage(input_tokens: int, output_tokens: int, cached: int = 0) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    }


def responses_turn(*items: dict[str, Any], input_tokens: int = 100, output_tokens: int = 20) -> Stream:
    """One Responses stream: the items, then `response.completed` with usage."""
    response = {"id": "resp_standin", "object": "response", "status": "in_progress", "output": []}
    events: list[Event] = [("response.created", {"type": "response.created", "response": response})]
    for index, item in enumerate(items):
        events.append(
            (
                "response.output_item.done",
                {"type": "response.output_item.done", "output_index": index, "item": item},
            )
        )
    completed = {
        **response,
        "status": "completed",
        "output": list(items),
        "usage": _openai_usage(input_tokens, output_tokens),
    }
    events.append(("response.completed", {"type": "response.completed", "response": completed}))
    return Stream(events)


def codex_patch_turn(patch: str, **usage: int) -> Stream:
    """Codex's edit tool: a `custom_tool_call` of `apply_patch` whose input is a `*** Begin Patch` text."""
    item = {
        "type": "custom_tool_call",
        "id": "ctc_standin",
        "call_id": "call_patch_1",
        "name": "apply_patch",
        "input": patch,
        "status": "completed",
    }
    return responses_turn(item, **usage)


def codex_message_turn(text: str, **usage: int) -> Stream:
    item = {
        "type": "message",
        "id": "msg_standin",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }
    return responses_turn(item, **usage)


def add_file_patch(path: str, text: str) -> str:
    body = "".join(f"+{line}\n" for line in text.splitlines())
    return f"*** Begin Patch\n*** Add File: {path}\n{body}*** End Patch"


# Anthropic Messages -------------------------------------------------------------------------------------


def messages_turn(
    *blocks: dict[str, Any], input_tokens: int = 100, output_tokens: int = 20, cached: int = 0
) -> Stream:
    """One Messages stream: message_start, each block (start, one delta, stop), message_delta, message_stop."""
    stop_reason = "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"
    message = {
        "id": "msg_standin",
        "type": "message",
        "role": "assistant",
        "model": "claude-standin",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {
            "input_tokens": input_tokens,
            "cache_read_input_tokens": cached,
            "cache_creation_input_tokens": 0,
            "output_tokens": 1,
        },
    }
    events: list[Event] = [("message_start", {"type": "message_start", "message": message})]
    for index, block in enumerate(blocks):
        if block["type"] == "tool_use":
            start = {**block, "input": {}}
            delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
        else:
            start = {"type": "text", "text": ""}
            delta = {"type": "text_delta", "text": block["text"]}
        events += [
            ("content_block_start", {"type": "content_block_start", "index": index, "content_block": start}),
            ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}),
            ("content_block_stop", {"type": "content_block_stop", "index": index}),
        ]
    events += [
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": output_tokens},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return Stream(events)


_WORKDIR = re.compile(r"Primary working directory: ([^\s\"\\]+)")


def request_workdir(body: dict[str, Any]) -> str:
    """The working directory Claude Code states in its environment block (Write wants absolute paths)."""
    match = _WORKDIR.search(json.dumps(body))
    if match is None:
        raise ValueError("the request names no working directory")
    return match.group(1)


def claude_write_turn(relative_path: str, content: str, **usage: int) -> Callable[[dict[str, Any]], Stream]:
    """Claude Code's Write tool on `relative_path` inside the working directory the request states."""

    def turn(body: dict[str, Any]) -> Stream:
        path = f"{request_workdir(body).rstrip('/')}/{relative_path}"
        block = {
            "type": "tool_use",
            "id": "toolu_standin_1",
            "name": "Write",
            "input": {"file_path": path, "content": content},
        }
        return messages_turn(block, **usage)

    return turn


def claude_message_turn(text: str, **usage: int) -> Stream:
    return messages_turn({"type": "text", "text": text}, **usage)


# The server ---------------------------------------------------------------------------------------------


def _sse(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


class ModelStandin:
    def __init__(self, key: str = "sk-standin-upstream") -> None:
        self.key = key
        self.requests: list[Recorded] = []
        self._scripts = {"/v1/responses": _Script(), "/v1/messages": _Script()}
        self._lock = threading.Lock()
        self.app = self._build_app()
        self._http = ThreadedServer(self.app, "model stand-in")

    @property
    def base_url(self) -> str:
        return self._http.base_url

    def script_responses(self, *turns: Turn) -> None:
        with self._lock:
            self._scripts["/v1/responses"].turns.extend(turns)

    def script_messages(self, *turns: Turn) -> None:
        with self._lock:
            self._scripts["/v1/messages"].turns.extend(turns)

    def requests_to(self, path: str) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def __enter__(self) -> "ModelStandin":
        self._http.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.stop()

    def _next_turn(self, path: str, body: dict[str, Any]) -> Stream | Fail:
        with self._lock:
            turns = self._scripts[path].turns
            turn = turns.popleft() if turns else None
        if turn is None:
            turn = (
                codex_message_turn("nothing more to do")
                if path == "/v1/responses"
                else claude_message_turn("done")
            )
        return turn(body) if callable(turn) else turn

    def _build_app(self) -> FastAPI:
        app = FastAPI()

        async def answer(request: Request) -> Any:
            path = request.url.path
            body = await request.json()
            headers = {k.lower(): v for k, v in request.headers.items()}
            with self._lock:
                self.requests.append(Recorded(path, headers, body, time.monotonic()))
            offered = headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ")
            if offered != self.key:
                return _error(
                    path, 401, "invalid x-api-key" if "messages" in path else "Incorrect API key provided"
                )
            turn = self._next_turn(path, body)
            if isinstance(turn, Fail):
                extra = {"retry-after": f"{turn.retry_after:g}"} if turn.retry_after is not None else {}
                return _error(path, turn.status, turn.message, extra)
            return StreamingResponse(
                _events(turn, str(body.get("model") or "")), media_type="text/event-stream"
            )

        app.post("/v1/responses")(answer)
        app.post("/v1/messages")(answer)
        return app


async def _events(turn: Stream, model: str) -> AsyncIterator[bytes]:
    for n, (name, data) in enumerate(turn.events):
        if turn.cut_after is not None and n >= turn.cut_after:
            # An exception mid-body makes uvicorn drop the connection without the chunked terminator.
            raise ConnectionAbortedError("scripted cut mid-stream")
        yield _sse(name, _naming_model(data, model))
        if turn.delay:
            await asyncio.sleep(turn.delay)


def _naming_model(data: dict[str, Any], model: str) -> dict[str, Any]:
    """As the providers do, the answer names the model the request asked for."""
    for holder in ("response", "message"):
        if model and isinstance(data.get(holder), dict):
            return {**data, holder: {**data[holder], "model": model}}
    return data


def _error(path: str, status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    if "messages" in path:
        kind = {401: "authentication_error", 429: "rate_limit_error"}.get(status, "api_error")
        body: dict[str, Any] = {"type": "error", "error": {"type": kind, "message": message}}
    else:
        kind = {401: "invalid_request_error", 429: "rate_limit_exceeded"}.get(status, "server_error")
        body = {"error": {"message": message, "type": kind, "code": kind}}
    return JSONResponse(body, status_code=status, headers=headers)
