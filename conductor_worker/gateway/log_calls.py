"""The gateway's log calls (AppendLogs, AppendLogBlock): token checked, then queued in the order they came.

The lines themselves are decoded later, in a worker thread (conductor_worker/gateway/log_group_writer.py):
each call hands the writer a function that decodes its request.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import grpc
from pydantic import TypeAdapter, ValidationError

from conductor_worker.gateway.log_blocks import LogBlock
from conductor_worker.gateway.log_group_writer import LogGroupWriter
from conductor_worker.gateway.log_store import LogStore
from contracts.logs import LogLine
from proto.conductor.v1 import agent_pb2
from security.tokens import TokenClaims
from stores.job_store import JobAttemptDir

_LOG_LINES = TypeAdapter(list[LogLine])
_APPEND_LOG_BLOCK = "/conductor.v1.AgentService/AppendLogBlock"
# A token's check holds for an agent's log calls this long: a flood of blocks costs one check (and its
# worker-thread hop) a second, not one per block. An attempt superseded meanwhile may store its own log
# (under its own attempt) for up to this long more; its other calls are refused at once.
CHECK_REUSE_SECONDS = 1.0
# Tokens whose checks are kept at most (one per agent sending logs right now); past it, old ones go.
_MAX_CHECKED_TOKENS = 1024


def decode_lines(request: agent_pb2.LogBatch) -> Callable[[], list[LogLine]]:
    """An AppendLogs call's decoding: its lines as contracts."""

    def lines() -> list[LogLine]:
        # Validated as one list: a flood of lines costs a quarter less than one model at a time.
        return _LOG_LINES.validate_python(
            [
                {
                    "seq": line.seq,
                    "step": line.step,
                    "stream": line.stream,
                    "text": line.text,
                    "ts": line.ts,
                }
                for line in request.lines
                if line.seq >= 1
            ]
        )

    return lines


@dataclass(frozen=True)
class ReceivedLogBlock:
    """An AppendLogBlock request as it came: its message, and its bytes, which the store keeps as they are
    (serializing the message again costs about as much as all the rest of the gateway's work on it)."""

    message: agent_pb2.LogBlock
    data: bytes

    @classmethod
    def parse(cls, data: bytes) -> "ReceivedLogBlock":
        return cls(agent_pb2.LogBlock.FromString(data), data)


class KeepLogBlockBytes(grpc.aio.ServerInterceptor):
    """Hands `AppendLogBlock` its request as a `ReceivedLogBlock`: the generated registration parses it
    and drops the bytes."""

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None or handler_call_details.method != _APPEND_LOG_BLOCK:
            return handler
        return grpc.unary_unary_rpc_method_handler(
            handler.unary_unary,
            request_deserializer=ReceivedLogBlock.parse,
            response_serializer=handler.response_serializer,
        )


def decode_block(request: ReceivedLogBlock) -> Callable[[], LogBlock]:
    """An AppendLogBlock call's decoding: its columns, checked."""

    def block() -> LogBlock:
        message = request.message
        runs = [(run.step, run.stream, run.count) for run in message.runs]
        return LogBlock.checked(message.first_seq, message.text, message.ts, runs, received=request.data)

    return block


class LogCalls:
    """The log calls of every agent: `authorize` checks a call's token (the gateway's own check)."""

    def __init__(
        self,
        logs: LogStore,
        authorize: Callable[[grpc.aio.ServicerContext], Awaitable[tuple[TokenClaims, JobAttemptDir]]],
    ) -> None:
        self._writer = LogGroupWriter(logs)
        self._authorize = authorize
        # Per token, the turn of its latest log call: see store.
        self._turns: dict[str, asyncio.Future] = {}
        # Per token, its claims as the last check found them, and until when (monotonic) they hold.
        self._checked: dict[str, tuple[TokenClaims, float]] = {}

    async def _claims(self, context: grpc.aio.ServicerContext, token: str) -> TokenClaims:
        """The call's claims: the token's last check while it holds (CHECK_REUSE_SECONDS, and never past
        the token's expiry), else a new check."""
        known = self._checked.get(token)
        if known is not None and known[1] > time.monotonic() and known[0].expires_at > time.time():
            return known[0]
        claims, _ = await self._authorize(context)
        now = time.monotonic()
        if len(self._checked) >= _MAX_CHECKED_TOKENS:
            self._checked = {t: c for t, c in self._checked.items() if c[1] > now}
            if len(self._checked) >= _MAX_CHECKED_TOKENS:
                self._checked.clear()
        self._checked[token] = (claims, now + CHECK_REUSE_SECONDS)
        return claims

    async def store(
        self,
        context: grpc.aio.ServicerContext,
        decode: Callable[[], Sequence[LogLine] | LogBlock],
        final: bool,
    ) -> agent_pb2.LogAck:
        """Check the call's token, then queue its lines, in the order the calls came.

        An agent keeps several log blocks in flight and the store takes them in the order they are
        queued. The token checks run in worker threads and may finish in any order; a block queued
        before the one ahead of it leaves a gap, stores nothing and is sent again. So the checks run
        side by side, but each call queues only once the call before it (same token) has queued or failed.
        A token checked less than CHECK_REUSE_SECONDS ago is not checked again (no worker thread at all).
        """
        token = str(dict(context.invocation_metadata() or ()).get("authorization", ""))
        ahead = self._turns.get(token)
        turn = self._turns[token] = asyncio.get_running_loop().create_future()
        try:
            claims = await self._claims(context, token)
            if ahead is not None:
                await asyncio.wait([ahead])
            stored = self._writer.queue((claims.job_id, claims.attempt), decode, final)
        finally:
            turn.set_result(None)
            if self._turns.get(token) is turn:
                del self._turns[token]
        try:
            acked = await asyncio.shield(stored)
        except (ValueError, ValidationError) as err:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"bad log lines: {err}")
        return agent_pb2.LogAck(acked_through_seq=acked)
