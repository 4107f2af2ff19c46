"""Every byte an agent or a client sends is bounded, and each refusal names its limit.

Bundles (gateway and publisher), one gRPC message, the result's texts, REST request bodies (before
parsing and before authentication), with the conductor's memory checked around 50 MB bodies.
The per-attempt log limit is in tests/unit/test_log_store.py.
"""

import asyncio
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import grpc
import httpx
import pytest
from pydantic import SecretStr

from activities.git_push import BundleError, push_bundle_branch
from conductor_worker.gateway.local_log_store import LocalLogStore
from conductor_worker.gateway.log_records import FRAMING
from conductor_worker.gateway.server import start_gateway
from contracts.jobs import AgentStatus, TaskFile
from proto.conductor.v1 import agent_pb2, agent_pb2_grpc
from security.tokens import mint_token
from stores.attempts import bundles_prefix
from stores.job_store import JobAttemptDir
from tests.agent_job_harness import agent_jobs
from tests.helpers import free_port, stage_attempt, wait_for
from tests.job_history import accepted_result, accepted_results

JOB = "job/ticket/jira/ENG-413"
CHUNK = 256 * 1024


@pytest.fixture
async def small_gateway(client, settings):
    """A gateway with small limits, its agent's job JOB running (tests/agent_job_harness.py): what the
    job accepted from the agent is read from Temporal."""
    settings = settings.model_copy(
        update={
            "max_bundle_bytes": 1_000_000,
            "grpc_max_receive_bytes": 512 * 1024,
            "max_result_text_chars": 100,
        }
    )
    stage_attempt(settings, JOB, 1, [TaskFile(path="job.json", content="{}")])
    async with agent_jobs(client, settings) as jobs:
        await jobs.start(JOB)
        server, port = await start_gateway(settings, client)
        token = mint_token(settings.signing_secret(), JOB, 1, ttl_seconds=60)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield agent_pb2_grpc.AgentServiceStub(channel), (("authorization", f"Bearer {token}"),), settings
        await server.stop(grace=None)


def upload(bundle_bytes: int, summary: str = "done"):
    data = os.urandom(CHUNK)
    digest = hashlib.sha256()
    sent = 0
    while sent < bundle_bytes:
        piece = data[: min(CHUNK, bundle_bytes - sent)]
        digest.update(piece)
        sent += len(piece)
        yield agent_pb2.UploadResultRequest(bundle_chunk=piece)
    result = agent_pb2.AgentResult(status="SUCCEEDED", summary=summary, bundle_sha256=digest.hexdigest())
    yield agent_pb2.UploadResultRequest(result=result)


async def test_a_bundle_over_the_limit_is_refused_and_fails_the_attempt(client, small_gateway):
    stub, metadata, settings = small_gateway
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.UploadResult(upload(3_000_000), metadata=metadata)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    expected = "bundle refused: larger than the limit of 1000000 bytes (CONDUCTOR_MAX_BUNDLE_BYTES)"
    assert refused.value.details() == expected
    result = await accepted_result(client, JOB)  # the attempt failed in its job, with the reason
    assert result.status == AgentStatus.FAILED and result.summary == expected
    # A retried upload, even one within the limit, is a duplicate: the refusal stands as the attempt's result.
    again = await stub.UploadResult(upload(1000), metadata=metadata)
    assert again.accepted and again.duplicate
    assert (await accepted_results(client, [JOB]))[JOB] == [result]
    assert settings.open_blob_store().keys(bundles_prefix(JOB, 1)) == [] and not list(
        JobAttemptDir(settings.jobs_dir, JOB, 1).root.glob(".upload-*")  # no partial upload left behind
    )


async def test_a_grpc_message_over_the_limit_is_resource_exhausted_before_authentication(small_gateway):
    stub, _, _ = small_gateway
    batch = agent_pb2.LogBatch(lines=[agent_pb2.LogLine(seq=1, text="x" * 600_000)])
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.AppendLogs(batch)  # no token at all
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "524288" in refused.value.details()


async def test_a_log_block_that_contradicts_itself_is_refused_with_the_reason_and_stores_nothing(
    small_gateway,
):
    stub, metadata, settings = small_gateway
    runs = [agent_pb2.LogRun(step="code", stream="stdout", count=5)]  # 5 lines claimed, 2 sent
    block = agent_pb2.LogBlock(first_seq=1, text=["a", "b"], ts=[1.0, 2.0], runs=runs)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.AppendLogBlock(block, metadata=metadata)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "add up to the 2 lines" in refused.value.details()
    one_run = [agent_pb2.LogRun(step="code", stream="stdout", count=2)]
    good = agent_pb2.LogBlock(first_seq=1, text=["a", "b"], ts=[1.0, 2.0], runs=one_run)
    assert (await stub.AppendLogBlock(good, metadata=metadata)).acked_through_seq == 2
    store = LocalLogStore(settings.logs_path)
    assert [line.text for line in store.read(JOB, 1)] == ["a", "b"]
    # Stored as the bytes it came in (KeepLogBlockBytes), framed as one record.
    stored, sent = store.path(JOB, 1).read_bytes(), good.SerializeToString()
    assert sent in stored and len(stored) == len(sent) + FRAMING


async def test_result_texts_are_cut_to_the_limit_saying_so(client, small_gateway):
    stub, metadata, _ = small_gateway
    await stub.UploadResult(upload(0, summary="s" * 5000), metadata=metadata)
    summary = (await accepted_result(client, JOB)).summary
    assert summary == "s" * 100 + "\n[cut to 100 characters: CONDUCTOR_MAX_RESULT_TEXT_CHARS]"


def test_the_publisher_refuses_a_bundle_over_the_limit_before_git_reads_it(tmp_path: Path):
    bundle = tmp_path / "work.bundle"
    bundle.write_bytes(b"\0" * 2048)  # not even a bundle: git never gets to say so
    with pytest.raises(
        BundleError, match=r"2048 bytes, over the limit of 1024 bytes \(CONDUCTOR_MAX_BUNDLE_BYTES\)"
    ):
        push_bundle_branch(bundle, "b", str(tmp_path / "nowhere.git"), "main", max_bytes=1024)


# REST API --------------------------------------------------------------------------------------

BIG = 50 * 2**20


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def post_raw(port: int, total: int, chunked: bool) -> tuple[str, bytes]:
    """POST a `total`-byte body to the registration endpoint without a token; (status line, body).

    Raw HTTP, sent the way a careful client does: with a declared length, the body follows only when
    the server has not answered the headers already (curl's `Expect: 100-continue` behaviour); chunked,
    64 KiB at a time, stopping as soon as an answer is there. Writing on into a closed connection
    would only get a reset instead of the answer.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}"
    writer.write(
        f"POST /api/v1/agents/register HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\n{framing}\r\n\r\n".encode()
    )
    block, sent, head = b"x" * 2**16, 0, b""
    while sent < total and not head:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=0.05)
            break
        except TimeoutError:
            pass  # no answer yet: send on
        data = block[: total - sent]
        writer.write(data if not chunked else f"{len(data):x}\r\n".encode() + data + b"\r\n")
        await writer.drain()
        sent += len(data)
    if chunked and not head:
        writer.write(b"0\r\n\r\n")
    if not head:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
    body = await asyncio.wait_for(reader.read(), timeout=10)
    writer.close()
    return head.split(b"\r\n")[0].decode(), body


@pytest.mark.timeout(60)
async def test_fifty_megabyte_unauthenticated_bodies_are_413_before_parsing(settings, start_conductor):
    port = free_port()
    settings = settings.model_copy(
        update={"rest_listen": f"127.0.0.1:{port}", "pool_join_token": SecretStr("join")}
    )
    await start_conductor(settings)

    async def answers():
        try:
            status, _ = await post_raw(port, 2, chunked=False)
            return status
        except (OSError, asyncio.IncompleteReadError):
            return None

    await wait_for(answers, timeout=30)
    idle = rss_mib()
    started = time.monotonic()
    for chunked in (False, True, False, True):
        status, body = await post_raw(port, BIG, chunked)
        assert status == "HTTP/1.1 413 Request Entity Too Large", (status, body)
        assert b"larger than the limit of 1048576 bytes (CONDUCTOR_REST_MAX_BODY_BYTES)" in body
    after = rss_mib()
    print(
        f"4 unauthenticated 50 MB bodies refused in {time.monotonic() - started:.2f}s; "
        f"conductor RSS {idle:.0f} MiB idle, {after:.0f} MiB after"
    )
    assert after - idle < 50
    # Under the limit the request reaches the API as before (401: no token).
    status, _ = await post_raw(port, 10, chunked=False)
    assert status.startswith(("HTTP/1.1 401", "HTTP/1.1 422"))


# Run in its own process, so the conductor's RSS (this process) is not mixed with the client's.
FLOOD = """
import asyncio, json, sys
import httpx

async def main(port):
    gate = asyncio.Semaphore(8)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        async def register(n):
            body = {"agent_id": f"flood-{n}", "capabilities": [f"cap{n}-" + "x" * 20_000] * 32}
            async with gate:
                r = await http.post("/api/v1/agents/register", json=body, headers={"Authorization": "Bearer join"})
            return r.status_code, r.json()["message"]
        answers = await asyncio.gather(*(register(n) for n in range(1000)))
    print(json.dumps({"statuses": sorted({s for s, _ in answers}), "message": answers[0][1]}))

asyncio.run(main(int(sys.argv[1])))
"""


@pytest.mark.timeout(90)
async def test_a_thousand_registrations_with_long_capabilities_are_each_refused(settings, start_conductor):
    port = free_port()
    settings = settings.model_copy(
        update={"rest_listen": f"127.0.0.1:{port}", "pool_join_token": SecretStr("join")}
    )
    await start_conductor(settings)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:

        async def answers():
            try:
                return (await http.get("/openapi.json")).status_code == 200
            except httpx.TransportError:
                return False

        await wait_for(answers, timeout=30)
    idle = rss_mib()
    started = time.monotonic()
    flood = await asyncio.create_subprocess_exec(
        sys.executable, "-c", FLOOD, str(port), stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(flood.communicate(), timeout=80)
    after = rss_mib()
    report = json.loads(out)
    assert report["statuses"] == [422]
    # A capability is a short name (contracts/pool.py): 20 kB ones fail its pattern, each named.
    assert "body.capabilities.0: String should match pattern" in report["message"], report
    print(
        f"1000 registrations with 32 x 20 kB capabilities refused (422) in {time.monotonic() - started:.1f}s; "
        f"conductor RSS {idle:.0f} MiB idle, {after:.0f} MiB after"
    )
    assert after - idle < 50
