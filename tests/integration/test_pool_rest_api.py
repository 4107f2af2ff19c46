"""The seed-003 REST API on real parts: a conductor serving uvicorn on loopback, the dev server, httpx.

The test plays the agent by hand, so every answer (200, 204, 401, 403, 404, 409, 422) is checked where
it happens; tests/integration/test_pool_agents.py runs real `conductor-agent pool` processes.
"""

import asyncio
import uuid
from datetime import UTC, datetime

import httpx
import pytest
from pydantic import SecretStr

from conductor_worker.pool_api.run_script import run_script
from contracts.jobs import FailureClass
from contracts.pool import MAX_POOL_AGENTS, PoolAgent, PoolState, ScriptStatus, pool_workflow_id
from security.tokens import mint_agent_token, mint_token
from tests.helpers import free_port, wait_for

JOIN = "join-secret-for-tests"


@pytest.fixture
async def api(settings, start_conductor):
    settings = settings.model_copy(
        update={"rest_listen": f"127.0.0.1:{free_port()}", "pool_join_token": SecretStr(JOIN)}
    )
    await start_conductor(settings)
    base = f"http://{settings.rest_listen}"
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        await wait_for(lambda: _answers(http), timeout=30)
        yield http, settings


async def register(http, agent_id: str, capabilities=("shell",)) -> str:
    body = {"agent_id": agent_id, "instance_id": "i-0abc", "capabilities": list(capabilities)}
    response = await http.post("/api/v1/agents/register", json=body, headers=_bearer(JOIN))
    assert response.status_code == 200, response.text
    return response.json()["token"]


async def test_register_poll_report_returns_the_result_to_the_workflow(api, client):
    http, settings = api
    agent, other = f"node-{uuid.uuid4().hex[:6]}", f"node-{uuid.uuid4().hex[:6]}"
    token, other_token = await register(http, agent), await register(http, other)
    assert (await poll(http, agent, token)).status_code == 204

    running = asyncio.create_task(
        run_script(client, "echo hi", "shell", timeout=60, task_queue=settings.task_queue)
    )
    response = await wait_for(lambda: _task(http, agent, token), timeout=60)
    task = response.json()
    assert (task["script"], task["capability"], task["timeout_seconds"]) == ("echo hi", "shell", 60)
    task_id = task["task_id"]

    # Empty polls are turned away by the pool's update validator: they add nothing to its history.
    pool = client.get_workflow_handle(pool_workflow_id(settings.task_queue))
    events = len((await pool.fetch_history()).events)
    assert [(await poll(http, other, other_token)).status_code for _ in range(3)] == [204] * 3
    assert len((await pool.fetch_history()).events) == events

    status = f"/api/v1/tasks/{task_id}/status"
    beat = await http.post(status, json={"status": "running"}, headers=_bearer(token))
    assert beat.status_code == 200 and beat.json()["accepted"] is True
    stolen = await http.post(
        status, json={"status": "completed", "exit_code": 0}, headers=_bearer(other_token)
    )
    assert stolen.status_code == 403
    assert stolen.json()["detail"] == f"task {task_id} is not assigned to agent {other}"

    final = {"status": "completed", "stdout": "hi\n", "stderr": "", "exit_code": 0}
    assert (await http.post(status, json=final, headers=_bearer(token))).status_code == 200
    result = await asyncio.wait_for(running, timeout=60)
    assert (result.status, result.exit_code, result.stdout, result.agent_id, result.failure_class) == (
        ScriptStatus.COMPLETED,
        0,
        "hi\n",
        agent,
        FailureClass.NONE,
    )
    assert result.attempts == 1 and result.duration_seconds >= 0
    # The same final report again (its acknowledgement was lost, say) is acknowledged again...
    assert (await http.post(status, json=final, headers=_bearer(token))).status_code == 200
    # ...but a beat for a finished task tells the agent to stop, and unknown tasks are 404.
    late = await http.post(status, json={"status": "running"}, headers=_bearer(token))
    assert late.status_code == 409
    unknown = await http.post(
        "/api/v1/tasks/no-such-task/status", json={"status": "running"}, headers=_bearer(token)
    )
    assert unknown.status_code == 404


@pytest.mark.parametrize(
    ("make_token", "detail"),
    [
        (lambda s, agent: None, "missing bearer token"),
        (lambda s, agent: "garbage", "malformed token"),
        (
            lambda s, agent: mint_agent_token(b"another-conductor-secret-0000000", agent, ["shell"], 60),
            "bad token signature",
        ),
        (lambda s, agent: mint_agent_token(s, agent, ["shell"], -1), "token expired"),
        (lambda s, agent: mint_token(s, "job/ticket/jira/ENG-1", 1, 60), "not a pool agent token"),
    ],
)
async def test_calls_without_a_valid_agent_token_are_401(api, make_token, detail):
    http, settings = api
    token = make_token(settings.signing_secret(), "node-1")
    headers = _bearer(token) if token else {}
    for response in (
        await http.get("/api/v1/tasks", params={"agent_id": "node-1"}, headers=headers),
        await http.post("/api/v1/tasks/t1/status", json={"status": "running"}, headers=headers),
    ):
        assert response.status_code == 401
        assert response.json()["detail"].startswith(detail)
        assert response.headers["www-authenticate"] == "Bearer"


async def test_registration_needs_the_join_token_and_a_token_serves_only_its_agent(api):
    http, _ = api
    body = {"agent_id": "node-1", "capabilities": ["shell"]}
    assert (await http.post("/api/v1/agents/register", json=body)).status_code == 401
    wrong = await http.post("/api/v1/agents/register", json=body, headers=_bearer("guess"))
    assert wrong.status_code == 401
    token = await register(http, "node-1")
    response = await poll(http, "node-2", token)
    assert response.status_code == 403
    assert response.json()["detail"] == "this token belongs to agent node-1, not node-2"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"status": "done"},
            "invalid request: body.status: Input should be 'running', 'completed', 'failed' or 'timed_out'",
        ),
        ({"stdout": "x"}, "invalid request: body.status: Field required"),
        (
            {"status": "failed", "exit_code": "three"},
            "invalid request: body.exit_code: Input should be a valid integer",
        ),
        ("not json", "invalid request: body: Input should be a valid dictionary"),
    ],
)
async def test_malformed_reports_are_422_with_a_readable_message(api, body, message):
    http, _ = api
    token = await register(http, "node-1")
    response = await http.post("/api/v1/tasks/t1/status", json=body, headers=_bearer(token))
    assert response.status_code == 422
    assert response.json()["message"].startswith(message), response.json()
    assert response.json()["detail"]  # FastAPI's usual list of errors is kept


async def test_malformed_registration_is_422(api):
    http, _ = api
    response = await http.post(
        "/api/v1/agents/register", json={"agent_id": "bad id!", "capabilities": []}, headers=_bearer(JOIN)
    )
    assert response.status_code == 422
    assert "body.agent_id: String should match pattern" in response.json()["message"]
    assert "body.capabilities: List should have at least 1 item" in response.json()["message"]


async def test_a_full_registry_is_a_503_with_the_reason_and_oversized_registrations_422(api, client):
    http, settings = api
    # The pool as 1,000 restarts of agents left it (contracts/pool.py: MAX_POOL_AGENTS), all just seen.
    now = datetime.now(UTC)
    full = {
        f"build-host-{n}": PoolAgent(capabilities=["shell"], registered_at=now)
        for n in range(MAX_POOL_AGENTS)
    }
    await client.start_workflow(
        "AgentPoolWorkflow",
        PoolState(agents=full),
        id=pool_workflow_id(settings.task_queue),
        task_queue=settings.task_queue,
    )
    body = {"agent_id": "build-host-new", "capabilities": ["shell"]}
    refused = await http.post("/api/v1/agents/register", json=body, headers=_bearer(JOIN))
    assert refused.status_code == 503
    assert refused.json()["detail"].startswith(f"the pool registry is full ({MAX_POOL_AGENTS} agents")
    assert refused.json()["detail"].endswith("register again later")

    for too_big, problem in [
        ({"instance_id": "i" * 129}, "body.instance_id: String should have at most 128 characters"),
        ({"capabilities": ["c" * 65]}, "body.capabilities.0: String should match pattern"),
        ({"capabilities": ["shell"] * 33}, "body.capabilities: List should have at most 32 items"),
    ]:
        body = {"agent_id": "x", "capabilities": ["shell"], **too_big}
        response = await http.post("/api/v1/agents/register", json=body, headers=_bearer(JOIN))
        assert response.status_code == 422
        assert problem in response.json()["message"]


async def test_the_openapi_schema_lists_the_three_paths(api):
    http, _ = api
    schema = (await http.get("/openapi.json")).json()
    assert {
        "/api/v1/agents/register": ["post"],
        "/api/v1/tasks": ["get"],
        "/api/v1/tasks/{task_id}/status": ["post"],
    } == {path: sorted(ops) for path, ops in schema["paths"].items()}
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


async def poll(http, agent_id: str, token: str) -> httpx.Response:
    return await http.get("/api/v1/tasks", params={"agent_id": agent_id}, headers=_bearer(token))


async def _task(http, agent_id: str, token: str) -> httpx.Response | None:
    response = await poll(http, agent_id, token)
    return response if response.status_code == 200 else None


async def _answers(http) -> bool:
    try:
        return (await http.get("/openapi.json")).status_code == 200
    except httpx.TransportError:
        return False


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
