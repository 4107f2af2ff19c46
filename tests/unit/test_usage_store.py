"""An attempt's model usage in the shared blob store (stores/usage_store.py), local and S3 (moto) alike:
two replicas' model gateways meter one attempt once, as one; their own answers count at once, the other
replica's within the relist time (at once when asked fresh); objects are bounded when read back."""

import time

import boto3
import pytest

from contracts.usage import ModelUsage
from stores.blob_store import BlobIntegrityError, BlobStore, LocalBlobStore, S3BlobStore
from stores.usage_store import RELIST_SECONDS, AttemptUsageStore, usage_prefix

pytestmark = pytest.mark.timeout(60)

JOB = "job/ticket/jira/ENG-9"


def answer(tokens: int, cost: float = 0.0) -> ModelUsage:
    return ModelUsage(requests=1, input_tokens=tokens, output_tokens=tokens // 10, cost_usd=cost)


@pytest.fixture(params=["local", "s3"])
def blobs(request, tmp_path) -> BlobStore:
    if request.param == "local":
        return LocalBlobStore(tmp_path / "blobs")
    aws = request.getfixturevalue("aws")  # moto in server mode, fresh state
    s3 = boto3.client("s3", endpoint_url=aws, region_name="us-east-1")
    s3.create_bucket(Bucket="conductor")
    return S3BlobStore(s3, "conductor")


def test_two_replicas_meter_one_attempt_as_one(blobs):
    one, two = AttemptUsageStore(blobs), AttemptUsageStore(blobs)
    assert one.total(JOB, 1) is None  # no model request yet
    one.add(JOB, 1, answer(1000, 0.01))
    two.add(JOB, 1, answer(500, 0.005))
    one.add(JOB, 1, answer(100))
    two.add(JOB, 2, answer(7))  # another attempt: its own budget
    expected = ModelUsage(requests=3, input_tokens=1600, output_tokens=160, cost_usd=0.015)
    assert one.total(JOB, 1, fresh=True) == two.total(JOB, 1, fresh=True) == expected
    assert one.total(JOB, 2).tokens == 7 and one.total("job/ticket/jira/ENG-10", 1) is None
    # Each request is an object of its own: nothing was overwritten by the other replica.
    assert len(blobs.keys(usage_prefix(JOB, 1))) == 3


def test_own_answers_count_at_once_and_the_other_replicas_within_the_relist_time(blobs):
    one, two = AttemptUsageStore(blobs), AttemptUsageStore(blobs)
    one.add(JOB, 1, answer(1000))
    assert one.total(JOB, 1).tokens == two.total(JOB, 1).tokens == 1100  # both have listed now
    two.add(JOB, 1, answer(2000))
    assert two.total(JOB, 1).tokens == 3300  # its own write, without a new list
    seen_by_one = one.total(JOB, 1).tokens
    # On S3 the list is kept a moment (3 requests a second per attempt would be 3 LISTs otherwise).
    assert seen_by_one == (1100 if blobs.remote else 3300)
    deadline = time.monotonic() + RELIST_SECONDS + 5
    while one.total(JOB, 1).tokens != 3300:
        assert time.monotonic() < deadline, "the other replica's answer never counted"
        time.sleep(0.1)


def test_a_retried_write_of_one_request_counts_once(blobs):
    store = AttemptUsageStore(blobs)
    store.add(JOB, 1, answer(100), request_id="req-1")
    store.add(JOB, 1, answer(100), request_id="req-1")
    assert AttemptUsageStore(blobs).total(JOB, 1).requests == 1


def test_an_oversized_object_is_refused_not_read_whole(blobs):
    blobs.put_bytes(f"{usage_prefix(JOB, 1)}planted.json", b"{" + b" " * 10_000 + b"}")
    with pytest.raises(BlobIntegrityError):
        AttemptUsageStore(blobs).total(JOB, 1)
