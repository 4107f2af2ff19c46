"""The model gateway alone (real HTTP on loopback, the scripted model server upstream), no Temporal.

Streaming as it arrives, retries before the first byte, errors passed through, usage counted per attempt.
"""

import time

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from temporalio.runtime import MetricBuffer, Runtime, TelemetryConfig

from contracts.jobs import AgentResult, AgentStatus
from contracts.usage import ModelPrice, ModelUsage
from model_gateway.routes import router_from_settings
from model_gateway.upstream import retry_after_seconds
from model_gateway.usage import read_usage
from security.tokens import mint_token
from stores.attempts import StagedAttempts
from stores.job_store import JobAttemptDir
from stores.usage_store import AttemptUsageStore
from tests.helpers import stage_attempt
from tests.model_standin import Fail, ModelStandin, Stream, claude_message_turn, codex_message_turn
from tests.standin_server import ThreadedServer

KEY = "sk-upstream"
pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def model():
    with ModelStandin(key=KEY) as standin:
        yield standin


@pytest.fixture(scope="module")
def metrics() -> MetricBuffer:
    """What the gateway records, as the SDK's runtime (the Prometheus exporter's source) receives it."""
    return MetricBuffer(10_000)


@pytest.fixture(scope="module")
def meter(metrics: MetricBuffer):
    return Runtime(telemetry=TelemetryConfig(metrics=metrics)).metric_meter


def gateway_settings(settings, model):
    return settings.model_copy(
        update={
            "model_openai_url": f"{model.base_url}/v1",
            "model_openai_api_key": SecretStr(KEY),
            "model_anthropic_url": f"{model.base_url}/v1",
            "model_anthropic_api_key": SecretStr(KEY),
            "model_retry_attempts": 3,
            "model_retry_max_wait_seconds": 2,
            "model_prices": {
                "claude-priced": ModelPrice(input_per_mtok=3, cached_input_per_mtok=0.3, output_per_mtok=15)
            },
        }
    )


def serve(settings, meter) -> ThreadedServer:
    app = FastAPI()
    router, _ = router_from_settings(settings, meter=meter)
    app.include_router(router)
    return ThreadedServer(app, "model gateway").start()


@pytest.fixture
def gateway(settings, model, meter):
    settings = gateway_settings(settings, model)
    job = JobAttemptDir(settings.jobs_dir, "job/ticket/jira/GW-1", 1)
    stage_attempt(settings, job.job_id, 1)
    token = mint_token(settings.signing_secret(), job.job_id, 1, ttl_seconds=60)
    server = serve(settings, meter)
    yield server.base_url, token, job
    server.stop()


def usage_of(settings, job: JobAttemptDir) -> ModelUsage:
    """The attempt's usage as the shared blob store holds it (stores/usage_store.py)."""
    return read_usage(AttemptUsageStore(settings.open_blob_store()), job)


def counted(settings, job: JobAttemptDir, requests: int = 1) -> ModelUsage:
    """The attempt's usage once `requests` answers are counted: the gateway writes it just after the answer."""
    deadline = time.monotonic() + 5
    while (usage := usage_of(settings, job)).requests < requests and time.monotonic() < deadline:
        time.sleep(0.01)
    return usage


def post(base: str, path: str, token: str, body: dict) -> httpx.Response:
    return httpx.post(f"{base}{path}", json=body, headers={"authorization": f"Bearer {token}"}, timeout=20)


def test_events_arrive_as_the_provider_sends_them(gateway, model):
    base, token, _ = gateway
    model.script_responses(Stream(codex_message_turn("slow").events, delay=0.3))
    arrivals = []
    with httpx.stream(
        "POST", f"{base}/v1/responses", json={"stream": True}, headers={"authorization": f"Bearer {token}"}
    ) as response:
        for line in response.iter_lines():
            if line.startswith("event:"):
                arrivals.append(time.monotonic())
    # 3 events 0.3 s apart: the first long before the last, so nothing was buffered.
    assert len(arrivals) == 3 and arrivals[-1] - arrivals[0] >= 0.5


def test_500s_before_the_first_byte_are_retried_and_usage_counted_and_priced(settings, gateway, model):
    base, token, job = gateway
    model.script_messages(
        Fail(500), Fail(529), claude_message_turn("ok", input_tokens=7, output_tokens=3, cached=5)
    )
    request = {"model": "claude-priced", "stream": True, "messages": []}

    response = post(base, "/v1/messages?beta=true", token, request)

    assert response.status_code == 200 and "message_stop" in response.text
    assert len(model.requests_to("/v1/messages")) == 3
    assert counted(settings, job).model_dump() == {
        "requests": 1,
        "input_tokens": 7,
        "cached_input_tokens": 5,
        "output_tokens": 3,
        # 2 uncached input tokens at $3/M, 5 cached at $0.30/M, 3 output at $15/M.
        "cost_usd": 0.0000525,
        "requests_unpriced": 0,
    }
    # The provider saw the conductor's key and the beta flag, never the job token.
    last = model.requests_to("/v1/messages")[-1]
    assert last.headers["x-api-key"] == KEY and token not in str(last.headers)


def test_requests_latency_and_tokens_are_metered(settings, gateway, model, metrics):
    base, token, job = gateway
    metrics.retrieve_updates()  # only this test's
    model.script_messages(claude_message_turn("ok", input_tokens=11, output_tokens=4))
    assert post(base, "/v1/messages", token, {"stream": True, "messages": []}).status_code == 200
    model.script_responses(Fail(503), Fail(503), Fail(503))
    assert post(base, "/v1/responses", token, {"stream": True}).status_code == 503
    counted(settings, job)

    updates = [(u.metric.name, u.value, dict(u.attributes)) for u in metrics.retrieve_updates()]
    requests = sorted((a["provider"], a["status"]) for n, _, a in updates if n == "conductor_model_requests")
    assert requests == [("anthropic", "200"), ("openai", "503")]
    tokens = {
        a["direction"]: v for n, v, a in updates if n == "conductor_model_tokens" and a["kind"] == "ticket"
    }
    assert tokens == {"input": 11, "output": 4}
    latencies = [v for n, v, _ in updates if n == "conductor_model_request_seconds"]
    assert len(latencies) == 2 and all(0 < v < 20 for v in latencies)


def test_an_upstream_error_that_outlasts_the_retries_reaches_the_cli(settings, gateway, model):
    base, token, job = gateway
    model.script_responses(Fail(503), Fail(503), Fail(503, message="overloaded"))

    response = post(base, "/v1/responses", token, {"stream": True})

    assert response.status_code == 503 and response.json()["error"]["message"] == "overloaded"
    assert usage_of(settings, job).requests == 0


def test_two_replicas_count_one_attempts_usage_once(settings, gateway, model, meter, tmp_path):
    """A second replica (its own state dir, the blob store shared) serves some of the attempt's requests:
    the attempt's usage is both replicas' answers, whichever replica is asked."""
    base, token, job = gateway
    other = gateway_settings(settings, model).model_copy(
        update={
            "state_dir": tmp_path / "replica-b",
            "blob_dir": str(settings.blobs_dir),
            "token_secret": SecretStr(settings.signing_secret().decode()),  # replicas share it
        }
    )
    second = serve(other, meter)
    try:
        model.script_messages(
            *(claude_message_turn("ok", input_tokens=10, output_tokens=1) for _ in range(4))
        )
        for url in (base, second.base_url, second.base_url, base):
            assert post(url, "/v1/messages", token, {"stream": True, "messages": []}).status_code == 200
        usage = counted(settings, job, requests=4)
        assert (usage.requests, usage.tokens) == (4, 44)
        assert usage_of(other, job) == usage
    finally:
        second.stop()


@pytest.mark.parametrize("marker", ["on", "off"])
def test_an_attempt_ended_on_one_replica_spends_nothing_on_another(
    settings, gateway, model, meter, tmp_path, marker
):
    """Replicas share only Temporal and the blob store: the replica that took the result marks the attempt
    ended there; without the marker, another replica (no result in its own state dir) forwards and spends."""
    base, token, job = gateway
    other = gateway_settings(settings, model).model_copy(
        update={
            "state_dir": tmp_path / "replica-b",
            "blob_dir": str(settings.blobs_dir),
            "token_secret": SecretStr(settings.signing_secret().decode()),
        }
    )
    second = serve(other, meter)
    try:
        model.script_messages(claude_message_turn("ok", input_tokens=10, output_tokens=1))
        # Replica B has seen the attempt live (a cached answer must not outlive the marker).
        assert (
            post(second.base_url, "/v1/messages", token, {"stream": True, "messages": []}).status_code == 200
        )
        job.store_result(AgentResult(status=AgentStatus.SUCCEEDED))  # replica A took the result
        if marker == "on":  # what the gRPC gateway does with it (conductor_worker/gateway/server.py)
            StagedAttempts(settings.open_blob_store()).mark_ended(job.job_id, job.attempt)
        model.script_messages(claude_message_turn("more", input_tokens=10, output_tokens=1))

        response = post(second.base_url, "/v1/messages", token, {"stream": True, "messages": []})

        if marker == "on":
            assert response.status_code == 401 and "ended" in response.json()["error"]["message"]
            assert len(model.requests) == 1
        else:  # the marker is what stops it: replica B alone cannot know
            assert response.status_code == 200 and len(model.requests) == 2
        assert post(base, "/v1/messages", token, {"stream": True, "messages": []}).status_code == 401
    finally:
        second.stop()


def test_a_request_without_a_valid_token_costs_nothing(gateway, model):
    base, token, _ = gateway
    for headers in ({}, {"authorization": "Bearer nonsense"}, {"authorization": f"Bearer {token}x"}):
        response = httpx.post(f"{base}/v1/responses", json={}, headers=headers)
        assert response.status_code == 401
    assert model.requests == []


def test_retry_after_reads_seconds_and_http_dates():
    assert retry_after_seconds("2") == 2.0
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    in_a_minute = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 60))
    assert 55 < retry_after_seconds(in_a_minute) <= 60


@pytest.mark.parametrize("check", ["on", "off"])
def test_an_ended_attempts_token_spends_nothing(settings, gateway, model, monkeypatch, check):
    """Zero spend once an attempt has ended; with the check off, its agent's request reaches the provider."""
    base, token, job = gateway
    job.result_path.parent.mkdir(parents=True, exist_ok=True)
    job.result_path.write_text("{}")  # the attempt's result is in: it has ended
    if check == "off":
        monkeypatch.setattr("model_gateway.access._ended", lambda attempts, job: False)

    response = post(base, "/v1/responses", token, {"stream": True})

    if check == "on":
        assert response.status_code == 401 and "ended" in response.json()["error"]["message"]
        assert model.requests == [] and usage_of(settings, job).requests == 0
    else:  # the protection is what stops it: the same request, unchecked, is forwarded and spends
        assert response.status_code == 200 and len(model.requests) == 1
