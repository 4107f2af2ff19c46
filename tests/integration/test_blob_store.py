"""The blob store, `local` and `s3` (moto's server over HTTP), and agents that use S3 with presigned URLs:
task files and bundles never pass through the conductor, and every byte is checked against its sha256."""

import asyncio
import hashlib
from collections.abc import Iterator
from pathlib import Path

import boto3
import grpc
import pytest
from botocore.exceptions import EndpointConnectionError
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.publish_git import LocalGitPublisher
from agent_runtime.blob_transfer import TaskFileIntegrityError, download_url, post_file
from conductor_worker.config import Settings
from conductor_worker.gateway.server import AgentGateway, start_gateway
from contracts.activity_io import PublishInput
from contracts.jobs import AgentResult, AgentStatus, JobSpec, ticket_work_item
from contracts.routing import RepoRoute
from contracts.tickets import TicketMessage
from proto.conductor.v1 import agent_pb2, agent_pb2_grpc
from stores.attempts import BUNDLES_PER_ATTEMPT, StagedAttempts, bundle_key, bundles_prefix
from stores.blob_store import BlobIntegrityError, BlobMissing, BlobStore, LocalBlobStore, S3BlobStore
from stores.mailbox import JobMailbox
from tests.agent_helpers import stage_job
from tests.agent_job_harness import agent_jobs
from tests.git_helpers import make_bare_repo_from, make_branch_bundle
from tests.helpers import free_port
from tests.job_history import accepted_result

BUCKET = "conductor-blobs"
pytestmark = pytest.mark.timeout(90)


def s3_client(endpoint: str):
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")


@pytest.fixture
def bucket(aws: str) -> str:
    s3_client(aws).create_bucket(Bucket=BUCKET)
    return BUCKET


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path: Path) -> Iterator[BlobStore]:
    if request.param == "local":
        yield LocalBlobStore(tmp_path / "blobs")
    else:
        aws = request.getfixturevalue("aws")
        yield S3BlobStore(s3_client(aws), request.getfixturevalue("bucket"), "blobs/")


def test_bytes_go_in_and_come_out_whole_and_checked(store: BlobStore, tmp_path: Path):
    data = bytes(range(256)) * 9000  # over two of the store's 1 MiB chunks
    sha = store.put_bytes("jobs/a/attempt-1/files/big.bin", data)
    assert sha == hashlib.sha256(data).hexdigest()
    assert store.size("jobs/a/attempt-1/files/big.bin") == len(data)
    assert store.get_bytes("jobs/a/attempt-1/files/big.bin", sha) == data

    dest = tmp_path / "out" / "big.bin"
    assert (
        store.download("jobs/a/attempt-1/files/big.bin", dest, sha, max_bytes=len(data)).read_bytes() == data
    )

    with pytest.raises(BlobIntegrityError, match="do not match sha256"):
        store.get_bytes("jobs/a/attempt-1/files/big.bin", "0" * 64)
    with pytest.raises(BlobIntegrityError, match="larger than the limit"):
        store.download("jobs/a/attempt-1/files/big.bin", tmp_path / "small", sha, max_bytes=1000)
    with pytest.raises(BlobIntegrityError, match="not 0000"):
        store.download("jobs/a/attempt-1/files/big.bin", tmp_path / "wrong", "0" * 64, max_bytes=len(data))
    assert not (tmp_path / "small").exists() and not (tmp_path / "wrong").exists()
    assert not list(tmp_path.glob(".*.part"))

    store.delete("jobs/a/attempt-1/files/big.bin")
    assert store.size("jobs/a/attempt-1/files/big.bin") is None
    with pytest.raises(BlobMissing):
        store.get_bytes("jobs/a/attempt-1/files/big.bin")


def test_text_is_content_addressed_and_a_damaged_or_unknown_blob_is_none(store: BlobStore):
    digest = store.put_text("line\n" * 1000)
    assert store.put_text("line\n" * 1000) == digest  # a redelivered ticket writes the same blob
    assert store.get_text(digest) == "line\n" * 1000
    store.put_bytes(digest, b"line\n")  # truncated or replaced
    assert store.get_text(digest) is None
    assert store.get_text("0" * 64) is None
    assert store.get_text("../../etc/passwd") is None  # not a sha256: never a path


@pytest.mark.parametrize("key", ["../escape", "/abs/path", "a/../../b", "a//b", ""])
def test_a_key_that_is_not_plain_and_relative_is_refused(key: str, tmp_path: Path):
    with pytest.raises(ValueError, match="not a blob key"):
        LocalBlobStore(tmp_path).put_bytes(key, b"x")


def test_presigned_urls_move_bytes_without_the_conductor_and_a_replaced_blob_is_refused(
    aws, bucket, tmp_path
):
    store = S3BlobStore(s3_client(aws), bucket, "blobs/")
    sha = store.put_bytes("jobs/a/attempt-1/files/prompt.md", b"the task\n")
    url = store.presigned_get("jobs/a/attempt-1/files/prompt.md", 60)
    assert url.startswith(aws)
    got = download_url(url, tmp_path / "prompt.md", 9, sha, "prompt.md", timeout=10)
    assert got.read_bytes() == b"the task\n"

    # Replaced after staging (same size): the agent refuses it, and leaves nothing behind.
    store.put_bytes("jobs/a/attempt-1/files/prompt.md", b"evil task")
    with pytest.raises(TaskFileIntegrityError, match="sha256 does not match"):
        download_url(url, tmp_path / "evil.md", 9, sha, "prompt.md", timeout=10)
    assert not (tmp_path / "evil.md").exists()

    bundle = tmp_path / "work.bundle"
    bundle.write_bytes(b"B" * 300_000)
    post = store.presigned_post("jobs/a/attempt-1/work.bundle", max_bytes=300_000, expires_seconds=60)
    post_file(post.url, post.fields, bundle, timeout=10)
    assert store.get_bytes("jobs/a/attempt-1/work.bundle") == b"B" * 300_000


def s3_settings(settings: Settings, aws: str, bucket: str) -> Settings:
    return settings.model_copy(
        update={
            "gateway_listen": f"127.0.0.1:{free_port()}",
            "blob_store": "s3",
            "blob_s3_bucket": bucket,
            "aws_endpoint_url": aws,
        }
    )


async def test_an_agent_given_presigned_urls_moves_its_files_and_bundle_through_s3_directly(
    client, settings, aws, bucket, sample_remote, tmp_path, monkeypatch
):
    settings = s3_settings(settings, aws, bucket)
    through_the_gateway = []

    async def no_download(self, request, context):
        through_the_gateway.append(request.path)
        yield  # pragma: no cover - an agent with presigned URLs never asks

    def no_put_file(self, key, path):
        through_the_gateway.append(key)
        raise AssertionError("the bundle came through the gateway")

    monkeypatch.setattr(AgentGateway, "DownloadFile", no_download)
    monkeypatch.setattr(S3BlobStore, "put_file", no_put_file)
    job_id, token = stage_job(settings, sample_remote)

    async with agent_jobs(client, settings) as jobs:  # the agent works in a real job
        assert await jobs.run_agent(job_id, token, tmp_path / "work") == 0, (
            tmp_path / "work" / "agent.err"
        ).read_text()
        result = await accepted_result(client, job_id)  # the result the job accepted

    assert result.status is AgentStatus.SUCCEEDED and through_the_gateway == []
    assert result.bundle_key == bundle_key(job_id, 1, result.bundle_sha256)
    stored = settings.open_blob_store().get_bytes(result.bundle_key, result.bundle_sha256)  # checked
    assert stored.startswith(b"# v2 git bundle")


@pytest.fixture
async def bundle_gateway(client, settings, aws, bucket, sample_remote):
    """A gateway on S3 stores and a staged job awaiting its agent: (stub, the agent's metadata, settings, job id)."""
    settings = s3_settings(settings, aws, bucket)
    job_id, token = stage_job(settings, sample_remote)
    async with agent_jobs(client, settings) as jobs:
        await jobs.start(job_id)
        server, port = await start_gateway(settings, client)
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                metadata = (("authorization", f"Bearer {token}"),)
                yield agent_pb2_grpc.AgentServiceStub(channel), metadata, settings, job_id
        finally:
            await server.stop(grace=None)


async def presigned_upload(stub, metadata, data: bytes, tmp_path: Path) -> agent_pb2.AgentResult:
    """What an agent does with S3: the presigned POST, then the result that names the uploaded bundle."""
    sha = hashlib.sha256(data).hexdigest()
    request = agent_pb2.PrepareBundleUploadRequest(size=len(data), sha256=sha)
    post = await stub.PrepareBundleUpload(request, metadata=metadata)
    bundle = tmp_path / f"{sha}.bundle"
    bundle.write_bytes(data)
    await asyncio.to_thread(post_file, post.url, dict(post.fields), bundle, 10)
    return agent_pb2.AgentResult(
        status="SUCCEEDED", bundle_sha256=sha, bundle_uploaded=True, bundle_size=len(data)
    )


async def test_a_second_agent_of_an_attempt_cannot_replace_the_reported_bundle(
    client, bundle_gateway, tmp_path
):
    """CI, stop 20: two agents of one attempt (a launch retried after its conductor died). The second one's
    presigned upload went to the same key as the first's and replaced the reported bundle (InvalidBundle)."""
    stub, metadata, settings, job_id = bundle_gateway
    first, second = b"# v2 git bundle\nfirst agent\n", b"# v2 git bundle\nsecond agent\n"
    # Both upload before either reports (a result stored first would stop the second at its request).
    first_result = await presigned_upload(stub, metadata, first, tmp_path)
    second_result = await presigned_upload(stub, metadata, second, tmp_path)
    reply = await stub.UploadResult(
        iter([agent_pb2.UploadResultRequest(result=first_result)]), metadata=metadata
    )
    assert reply.accepted and not reply.duplicate
    again = await stub.UploadResult(
        iter([agent_pb2.UploadResultRequest(result=second_result)]), metadata=metadata
    )
    assert again.accepted and again.duplicate
    # After the report, no more upload URLs for the attempt.
    late = agent_pb2.PrepareBundleUploadRequest(size=len(second), sha256=second_result.bundle_sha256)
    assert not (await stub.PrepareBundleUpload(late, metadata=metadata)).url

    accepted = await accepted_result(client, job_id)
    assert accepted.bundle_sha256 == first_result.bundle_sha256
    # Every replica's model gateway now refuses the attempt's token (tests/integration/test_model_gateway.py).
    assert StagedAttempts(settings.open_blob_store()).ended(job_id, 1)
    assert (
        settings.open_blob_store().get_bytes(accepted.bundle_key, accepted.bundle_sha256) == first
    )  # checked


async def test_an_attempt_stores_a_bounded_number_of_bundles_each_named_by_a_real_sha256(
    bundle_gateway, tmp_path
):
    stub, metadata, settings, job_id = bundle_gateway
    for n in range(BUNDLES_PER_ATTEMPT):
        await presigned_upload(stub, metadata, f"bundle {n}".encode(), tmp_path)
    # The same bytes again go where they went: no new bundle.
    await presigned_upload(stub, metadata, b"bundle 0", tmp_path)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await presigned_upload(stub, metadata, b"one more", tmp_path)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"holds {BUNDLES_PER_ATTEMPT} bundles already" in refused.value.details()
    assert len(settings.open_blob_store().keys(bundles_prefix(job_id, 1))) == BUNDLES_PER_ATTEMPT
    for sha in ("", "../attempt.json", "A" * 64):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.PrepareBundleUpload(
                agent_pb2.PrepareBundleUploadRequest(size=8, sha256=sha), metadata=metadata
            )
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, sha


async def test_a_bundle_whose_bytes_do_not_match_its_sha256_is_not_published(tmp_path):
    bare = make_bare_repo_from({"README.md": "hello\n"}, tmp_path / "origin.git")
    bundle, sha = make_branch_bundle(bare, tmp_path / "agent", "conductor/ENG-1", {"fix.txt": "fixed\n"})
    blobs = LocalBlobStore(tmp_path / "blobs")
    reported = hashlib.sha256(bundle.read_bytes()).hexdigest()
    key = bundle_key("job/ticket/jira/ENG-1", 1, reported)
    blobs.put_file(key, bundle)
    blobs.put_bytes(key, bundle.read_bytes() + b"\n")  # changed in the store after the agent reported
    spec = JobSpec(
        job_id="job/ticket/jira/ENG-1",
        work=ticket_work_item(TicketMessage(key="ENG-1", summary="Fix it")),
        route=RepoRoute(repo_url=str(bare), publisher="local"),
        branch="conductor/ENG-1",
    )
    result = AgentResult(status=AgentStatus.SUCCEEDED, bundle_key=key, bundle_sha256=reported, commit_sha=sha)

    with pytest.raises(ApplicationError) as refused:
        await ActivityEnvironment().run(
            LocalGitPublisher(blobs).publish_local, PublishInput(spec=spec, result=result)
        )

    assert refused.value.type == "InvalidBundle" and refused.value.non_retryable
    assert f"not {reported}" in refused.value.message


def test_a_jobs_mailbox_written_by_one_replica_is_read_by_another(store: BlobStore):
    # Two replicas' mailboxes on one store: what one job activity puts in, any gateway reads.
    writer, reader = JobMailbox(store), JobMailbox(store)
    for _ in range(2):  # an activity retried writes the same entries again: still one each
        writer.add_steering("job/ticket/jira/M-1", 2, "second", "bob")
        writer.add_steering("job/ticket/jira/M-1", 1, "first", "alice")
        writer.add_later_alarms(
            "job/ticket/jira/M-1",
            [
                {"event_id": "e/2", "at": "2026-11-26T10:05:00+00:00", "text": "ALARM later"},
                {"event_id": "e/1", "at": "2026-11-26T10:00:00+00:00", "text": "ALARM earlier"},
            ],
        )
    assert [(e["seq"], e["text"], e["by"]) for e in reader.steering("job/ticket/jira/M-1")] == [
        (1, "first", "alice"),
        (2, "second", "bob"),
    ]
    assert [a["text"] for a in reader.later_alarms("job/ticket/jira/M-1")] == ["ALARM earlier", "ALARM later"]
    assert reader.steering("job/ticket/jira/OTHER") == [] and reader.delivered("job/ticket/jira/M-1", 1) == 0
    reader.mark_delivered("job/ticket/jira/M-1", 1, 2)
    assert writer.delivered("job/ticket/jira/M-1", 1) == 2 and writer.delivered("job/ticket/jira/M-1", 2) == 0


async def test_a_result_is_taken_when_the_ended_marker_cannot_be_stored(
    client, bundle_gateway, tmp_path, monkeypatch, caplog
):
    """The marker only spares other replicas' model budgets: a store outage at that moment costs the marker,
    not the result the job already has."""
    stub, metadata, _, job_id = bundle_gateway
    result = await presigned_upload(stub, metadata, b"# v2 git bundle\nwork\n", tmp_path)

    def outage(self, job_id, attempt):
        raise EndpointConnectionError(endpoint_url="http://s3.invalid")

    monkeypatch.setattr(StagedAttempts, "mark_ended", outage)
    reply = await stub.UploadResult(iter([agent_pb2.UploadResultRequest(result=result)]), metadata=metadata)

    assert reply.accepted and not reply.duplicate
    assert (await accepted_result(client, job_id)).bundle_sha256 == result.bundle_sha256
    assert "ended marker not stored" in caplog.text
