"""The blob store, `local` and `s3` (moto's server over HTTP), and agents that use S3 with presigned URLs:
task files and bundles never pass through the conductor, and every byte is checked against its sha256."""

import hashlib
from collections.abc import Iterator
from pathlib import Path

import boto3
import grpc
import pytest
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
from stores.attempts import bundle_key
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
    assert result.bundle_key == bundle_key(job_id, 1)
    stored = settings.open_blob_store().get_bytes(result.bundle_key, result.bundle_sha256)  # checked
    assert stored.startswith(b"# v2 git bundle")


async def test_a_second_agent_of_a_reported_attempt_cannot_replace_its_bundle(
    client, settings, aws, bucket, sample_remote, tmp_path
):
    """CI, stop 20: two agents of one attempt (a launch retried after a conductor died). The second asked for a
    presigned POST after the first had reported, and its bundle replaced the reported one (InvalidBundle)."""
    settings = s3_settings(settings, aws, bucket)
    job_id, token = stage_job(settings, sample_remote)
    metadata = (("authorization", f"Bearer {token}"),)
    first, second = tmp_path / "first.bundle", tmp_path / "second.bundle"
    first.write_bytes(b"# v2 git bundle\nfirst agent\n")
    second.write_bytes(b"# v2 git bundle\nsecond agent\n")
    sha = hashlib.sha256(first.read_bytes()).hexdigest()

    async with agent_jobs(client, settings) as jobs:
        await jobs.start(job_id)
        server, port = await start_gateway(settings, client)
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = agent_pb2_grpc.AgentServiceStub(channel)
                size = first.stat().st_size
                request = agent_pb2.PrepareBundleUploadRequest(size=size, sha256=sha)
                post = await stub.PrepareBundleUpload(request, metadata=metadata)
                post_file(post.url, dict(post.fields), first, timeout=10)
                result = agent_pb2.AgentResult(
                    status="SUCCEEDED", bundle_sha256=sha, bundle_uploaded=True, bundle_size=size
                )
                reply = await stub.UploadResult(
                    iter([agent_pb2.UploadResultRequest(result=result)]), metadata=metadata
                )
                assert reply.accepted and not reply.duplicate

                # The second agent: no URL to the reported bundle's key; through the gateway it is a duplicate.
                size = second.stat().st_size
                request = agent_pb2.PrepareBundleUploadRequest(size=size, sha256="0" * 64)
                assert not (await stub.PrepareBundleUpload(request, metadata=metadata)).url
                other = agent_pb2.AgentResult(
                    status="SUCCEEDED", bundle_sha256=hashlib.sha256(second.read_bytes()).hexdigest()
                )
                requests = [agent_pb2.UploadResultRequest(bundle_chunk=second.read_bytes())]
                requests.append(agent_pb2.UploadResultRequest(result=other))
                again = await stub.UploadResult(iter(requests), metadata=metadata)
                assert again.accepted and again.duplicate
        finally:
            await server.stop(grace=None)
        accepted = await accepted_result(client, job_id)

    assert accepted.bundle_sha256 == sha
    assert settings.open_blob_store().get_bytes(accepted.bundle_key, sha) == first.read_bytes()  # checked


async def test_a_bundle_whose_bytes_do_not_match_its_sha256_is_not_published(tmp_path):
    bare = make_bare_repo_from({"README.md": "hello\n"}, tmp_path / "origin.git")
    bundle, sha = make_branch_bundle(bare, tmp_path / "agent", "conductor/ENG-1", {"fix.txt": "fixed\n"})
    blobs = LocalBlobStore(tmp_path / "blobs")
    key = bundle_key("job/ticket/jira/ENG-1", 1)
    reported = blobs.put_file(key, bundle)
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
