"""The pool agents' REST API (seed 003), served by uvicorn inside the conductor process.

    POST /api/v1/agents/register          join secret -> a bearer token bound to the agent id
    GET  /api/v1/tasks?agent_id=...       the oldest task for the agent's capabilities, or 204
    POST /api/v1/tasks/{task_id}/status   a `running` beat, or the final result

Every call is authenticated: registration with the pool join secret, everything else with the agent's
own token, whose agent id must be the caller's. The dispatch state is in Temporal (conductor_worker/
pool_api/pool_calls.py), so agents may use any conductor; a 5xx or a dropped connection means "try the next".
The schema is at /openapi.json, the docs at /docs.
"""

import asyncio
import contextlib
import hmac
import logging
import socket
from datetime import UTC, datetime, timedelta
from typing import Annotated

import uvicorn
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request, Response, Security
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from temporalio.client import Client
from temporalio.exceptions import TemporalError
from temporalio.service import RPCError

from conductor_worker.config import Settings
from conductor_worker.pool_api.body_limit import BodyLimit
from conductor_worker.pool_api.pool_calls import PoolCallError, PoolCalls
from conductor_worker.tls import tls_enabled, uvicorn_ssl_options
from contracts.pool import (
    BEAT_SECONDS,
    NAME_PATTERN,
    AgentRegistration,
    Registered,
    ReportAck,
    ScriptTask,
    TaskReport,
)
from security.tokens import AgentTokenClaims, TokenError, mint_agent_token, verify_agent_token

log = logging.getLogger(__name__)

# In-flight requests (a report on its way to Temporal) get this long when the drain stops the server.
GRACEFUL_SECONDS = 5
_CHALLENGE = {"WWW-Authenticate": "Bearer"}
DEFAULT_MAX_BODY_BYTES = 2**20
# A model request (the model gateway's routes) carries the whole conversation so far, prompt included: a
# 1 MB ticket must fit, and a hostile body still may not grow without bound.
MODEL_REQUEST_MAX_BYTES = 32 * 2**20
_MAX_ERRORS_SHOWN = 5

Bearer = Annotated[HTTPAuthorizationCredentials | None, Security(HTTPBearer(auto_error=False))]


def build_app(
    calls: PoolCalls,
    signing_secret: bytes,
    join_token: str,
    token_ttl_seconds: int,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> FastAPI:
    app = FastAPI(
        title="Agent Conductor pool API",
        version="1",
        summary="Seed 003: pool agents register, poll for script tasks and report their results.",
    )
    # Outermost: a body over the limit is refused (413) before it is parsed or its token checked.
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)

    def agent(credentials: Bearer) -> AgentTokenClaims:
        if credentials is None:
            raise HTTPException(401, "missing bearer token", headers=_CHALLENGE)
        try:
            return verify_agent_token(signing_secret, credentials.credentials)
        except TokenError as err:
            raise HTTPException(401, f"{err}; register again", headers=_CHALLENGE) from err

    Agent = Annotated[AgentTokenClaims, Depends(agent)]

    @app.post("/api/v1/agents/register", response_model=Registered, tags=["agents"])
    async def register(registration: AgentRegistration, credentials: Bearer) -> Registered:
        """Join the pool with the join secret as bearer token; the answer holds the agent's own token."""
        if not join_token:
            raise HTTPException(403, "registration is disabled: the conductor has no pool join token")
        offered = credentials.credentials if credentials else ""
        if not hmac.compare_digest(offered.encode(), join_token.encode()):
            raise HTTPException(401, "bad or missing pool join token", headers=_CHALLENGE)
        try:
            await calls.register(registration)
        except PoolCallError as err:  # 503: the pool's registry is full
            log.warning("pool agent %s refused: %s", registration.agent_id, err.message)
            raise HTTPException(err.status, err.message) from err
        log.info("pool agent %s registered (%s)", registration.agent_id, ",".join(registration.capabilities))
        return Registered(
            agent_id=registration.agent_id,
            token=mint_agent_token(
                signing_secret, registration.agent_id, registration.capabilities, token_ttl_seconds
            ),
            expires_at=datetime.now(UTC) + timedelta(seconds=token_ttl_seconds),
            beat_seconds=BEAT_SECONDS,
        )

    @app.get(
        "/api/v1/tasks",
        response_model=ScriptTask,
        responses={204: {"description": "No task for this agent's capabilities right now."}},
        tags=["tasks"],
    )
    async def poll(
        claims: Agent, agent_id: Annotated[str, Query(pattern=NAME_PATTERN)]
    ) -> ScriptTask | Response:
        """Claim the oldest waiting task the agent's registered capabilities match."""
        _same_agent(claims, agent_id)
        task = await calls.claim(agent_id, list(claims.capabilities))
        if task is None:
            return Response(status_code=204)
        log.info("task %s claimed by %s", task.task_id, agent_id)
        return task

    @app.post("/api/v1/tasks/{task_id}/status", response_model=ReportAck, tags=["tasks"])
    async def report(
        claims: Agent, task_id: Annotated[str, Path(pattern=NAME_PATTERN)], report: TaskReport
    ) -> ReportAck:
        """`running` extends the task's lease; `completed`, `failed` or `timed_out` is its result.

        403: the task is not (or no longer, after a lost lease) this agent's. 404: no such task. 409: the
        task is over (finished or timed out). After a 403 or 409 the agent stops working on it.
        """
        try:
            return await calls.report(task_id, claims.agent_id, report)
        except PoolCallError as err:
            raise HTTPException(err.status, err.message) from err

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # One readable line next to FastAPI's usual list, e.g. "body.status: Input should be 'running', …".
        # At most a few errors, each without the offending input: a refusal never echoes a large body.
        errors = [{k: v for k, v in e.items() if k != "input"} for e in exc.errors()[:_MAX_ERRORS_SHOWN]]
        message = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors)
        return JSONResponse(
            status_code=422,
            content={"message": f"invalid request: {message}", "detail": jsonable_encoder(errors)},
        )

    @app.exception_handler(RPCError)
    @app.exception_handler(TemporalError)
    async def _temporal_unavailable(request: Request, exc: Exception) -> JSONResponse:
        # The agent retries elsewhere; nothing was decided.
        log.warning("%s %s: Temporal call failed: %s", request.method, request.url.path, exc)
        return JSONResponse(status_code=503, content={"detail": f"Temporal call failed: {exc}"})

    return app


def _same_agent(claims: AgentTokenClaims, agent_id: str) -> None:
    if agent_id != claims.agent_id:
        raise HTTPException(403, f"this token belongs to agent {claims.agent_id}, not {agent_id}")


class _EmbeddedServer(uvicorn.Server):
    """The conductor owns SIGTERM and SIGINT (they start its drain): uvicorn must not take them over."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield


class RestServer:
    def __init__(self, server: uvicorn.Server, task: asyncio.Task, port: int, scheme: str) -> None:
        self._server, self.task, self.port, self.scheme = server, task, port, scheme

    async def stop(self) -> None:
        """Finish the requests in flight (up to GRACEFUL_SECONDS), then close; agents move to the next URL."""
        self._server.should_exit = True
        await self.task


async def start_rest_api(
    client: Client, settings: Settings, listen: str, routers: list[APIRouter] = ()
) -> RestServer:
    """The conductor's HTTP server on `listen`: the pool API when `rest_listen` is set, plus `routers`
    (the model gateway's)."""
    host, _, port = listen.rpartition(":")
    if settings.rest_listen:
        app = build_app(
            PoolCalls(client, settings.task_queue),
            settings.signing_secret(),
            settings.pool_join_token.get_secret_value(),
            settings.token_ttl_seconds,
            # Model requests carry whole conversations: with the gateway on this server, its larger bound.
            max(settings.rest_max_body_bytes, MODEL_REQUEST_MAX_BYTES)
            if routers
            else settings.rest_max_body_bytes,
        )
    else:
        app = FastAPI(title="Agent Conductor", version="1")
        app.add_middleware(BodyLimit, max_bytes=MODEL_REQUEST_MAX_BYTES)
    for router in routers:
        app.include_router(router)
    # Bound here so `:0` works and a taken port fails the conductor's start, not a background task.
    sock = socket.socket(socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Inherited by each accepted connection. asyncio sets TCP_NODELAY only on sockets created with
    # proto=IPPROTO_TCP, which this one is not; without it the model gateway's SSE answers waited 40 ms
    # (Nagle against the CLI's delayed ACK) per response (benchmarks/gateway_bench.py).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host.strip("[]") or "0.0.0.0", int(port)))
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=GRACEFUL_SECONDS,
        **uvicorn_ssl_options(settings),
    )
    server = _EmbeddedServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="rest-api")
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("the REST API stopped while starting")
        await asyncio.sleep(0.05)
    bound = sock.getsockname()[1]
    scheme = "https" if tls_enabled(settings) else "http"
    served = ", ".join(["pool REST API"] * bool(settings.rest_listen) + ["model gateway"] * bool(routers))
    log.info("%s listening on %s://%s:%d", served, scheme, host or "0.0.0.0", bound)
    return RestServer(server, task, bound, scheme)
