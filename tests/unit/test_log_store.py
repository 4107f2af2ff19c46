"""The conductor's log store: each line stored once and in order, gaps refused, tail, completion."""

import boto3
import pytest

from conductor_worker.config import Settings
from conductor_worker.gateway.local_log_store import LocalLogStore
from conductor_worker.gateway.log_blocks import LogBlock
from conductor_worker.gateway.log_records import encode_record
from conductor_worker.gateway.log_store import LogStore, open_log_store
from conductor_worker.gateway.s3_log_store import S3LogStore
from contracts.ids import safe_name
from contracts.logs import LogLine

pytestmark = pytest.mark.timeout(60)

JOB = "job/ticket/jira/ENG-7"


def lines(first: int, last: int, step: str = "test") -> list[LogLine]:
    return [
        LogLine(seq=i, step=step, stream="stdout", text=f"line {i}", ts=1.0) for i in range(first, last + 1)
    ]


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path) -> LogStore:
    if request.param == "local":
        return LocalLogStore(tmp_path / "logs")
    aws = request.getfixturevalue("aws")  # moto in server mode, fresh state
    s3 = boto3.client("s3", endpoint_url=aws, region_name="us-east-1")
    s3.create_bucket(Bucket="conductor-logs")
    return S3LogStore(s3, "conductor-logs", "logs/")


def seqs(store: LogStore, attempt: int = 1, after: int = 0) -> list[int]:
    return [line.seq for line in store.read(JOB, attempt, after)]


def test_resent_and_overlapping_batches_are_stored_once_in_order(store: LogStore):
    assert store.append(JOB, 1, lines(1, 100)) == 100
    assert store.append(JOB, 1, lines(1, 100)) == 100  # the ack was lost: the same batch again
    assert store.append(JOB, 1, lines(50, 150)) == 150  # a re-send that overlaps new lines
    assert store.append(JOB, 1, list(reversed(lines(151, 160)))) == 160
    assert seqs(store) == list(range(1, 161))
    assert [line.text for line in store.read(JOB, 1)][:2] == ["line 1", "line 2"]


def test_a_batch_past_a_gap_is_stored_up_to_the_gap(store: LogStore):
    store.append(JOB, 1, lines(1, 10))
    assert store.append(JOB, 1, lines(12, 20)) == 10  # 11 missing: nothing after it is stored
    assert store.append(JOB, 1, [*lines(11, 11), *lines(13, 14)]) == 11
    assert seqs(store) == list(range(1, 12))


def test_read_after_a_seq_and_attempts_are_separate_logs(store: LogStore):
    store.append(JOB, 1, lines(1, 30))
    store.append(JOB, 2, lines(1, 5))
    assert seqs(store, 1, after=25) == [26, 27, 28, 29, 30]
    store.append(JOB, 1, lines(31, 32))
    assert seqs(store, 1, after=30) == [31, 32]
    assert seqs(store, 2) == [1, 2, 3, 4, 5]
    assert store.attempts(JOB) == [1, 2]
    assert store.attempts("job/none") == [] and store.read("job/none", 1) == []


def test_tail_is_the_end_of_the_latest_attempt(store: LogStore):
    store.append(JOB, 1, lines(1, 50))
    for first in range(1, 5000, 1000):
        store.append(JOB, 2, lines(first, first + 999))
    assert [line.seq for line in store.tail(JOB, 3)] == [4998, 4999, 5000]
    assert [line.seq for line in store.tail(JOB, 1500)] == list(range(3501, 5001))
    assert store.tail(JOB, 0) == [] and store.tail("job/none", 5) == []


def test_the_log_is_complete_once_the_final_line_is_stored(store: LogStore):
    store.append(JOB, 1, lines(1, 5))
    assert not store.is_complete(JOB, 1)
    assert store.append(JOB, 1, lines(7, 8), final=True) == 5  # a gap: the final line isn't stored
    assert not store.is_complete(JOB, 1)
    store.append(JOB, 1, lines(6, 8), final=True)
    assert store.is_complete(JOB, 1) and not store.is_complete(JOB, 2)


def test_a_record_torn_by_a_crash_is_cut_off_and_stored_again(tmp_path):
    store = LocalLogStore(tmp_path / "logs")
    store.append(JOB, 1, lines(1, 3))
    record = encode_record(LogBlock.from_lines(lines(4, 5)))
    with store.path(JOB, 1).open("ab") as f:
        f.write(record[: len(record) // 2])  # the conductor died mid-write, before its ack
    assert [line.seq for line in store.tail(JOB, 2)] == [2, 3]
    assert seqs(store) == [1, 2, 3]
    assert LocalLogStore(tmp_path / "logs").append(JOB, 1, lines(4, 5)) == 5  # a restarted conductor
    assert seqs(store) == [1, 2, 3, 4, 5]
    assert store.path(JOB, 1).stat().st_size == len(encode_record(LogBlock.from_lines(lines(1, 3)))) + len(
        record
    )


def store_as_json_lines(store: LogStore, attempt: int, stored: list[LogLine]) -> None:
    """An attempt's log as a conductor stored it before log records: one JSON `LogLine` a line."""
    body = b"".join(line.model_dump_json().encode() + b"\n" for line in stored)
    if isinstance(store, LocalLogStore):
        path = store.json_lines_path(JOB, attempt)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
    else:
        assert isinstance(store, S3LogStore)
        key = f"logs/{safe_name(JOB)}/attempt-{attempt}/{stored[0].seq:012d}-{stored[-1].seq:012d}.jsonl"
        store._s3.put_object(Bucket="conductor-logs", Key=key, Body=body)


def test_logs_stored_as_json_lines_before_the_upgrade_are_read_and_continued(store: LogStore):
    store_as_json_lines(store, 1, lines(1, 50))
    store_as_json_lines(store, 2, lines(1, 5))
    assert store.attempts(JOB) == [1, 2]
    assert seqs(store) == list(range(1, 51)) and seqs(store, 1, after=45) == [46, 47, 48, 49, 50]
    assert [line.text for line in store.read(JOB, 1)][:2] == ["line 1", "line 2"]
    assert [line.seq for line in store.tail(JOB, 2)] == [4, 5]
    # The agent re-sends from where its ack stopped: only the new lines are stored, after the old ones.
    assert store.append(JOB, 1, lines(40, 60)) == 60
    assert store.append(JOB, 1, lines(62, 70)) == 60  # a gap is still a gap
    assert store.append(JOB, 2, lines(6, 8), final=True) == 8
    assert seqs(store) == list(range(1, 61)) and seqs(store, 1, after=48) == list(range(49, 61))
    assert [line.seq for line in store.tail(JOB, 5)] == [4, 5, 6, 7, 8]  # across both formats
    assert store.is_complete(JOB, 2)


def test_s3_reads_never_show_a_line_twice_even_when_two_gateways_raced(aws):
    s3 = boto3.client("s3", endpoint_url=aws, region_name="us-east-1")
    s3.create_bucket(Bucket="conductor-logs")
    one, two = S3LogStore(s3, "conductor-logs"), S3LogStore(s3, "conductor-logs")
    one.append(JOB, 1, lines(1, 10))
    two.append(JOB, 1, lines(1, 20))  # two's cache was empty: it lists, and stores only 11..20
    one.append(JOB, 1, lines(11, 25))  # one's cache says 10: it stores 11..25 again
    assert [line.seq for line in two.read(JOB, 1)] == list(range(1, 26))


def test_settings_choose_the_store(aws, tmp_path):
    assert isinstance(open_log_store(Settings(state_dir=tmp_path)), LocalLogStore)
    boto3.client("s3", endpoint_url=aws, region_name="us-east-1").create_bucket(Bucket="conductor-logs")
    settings = Settings(
        state_dir=tmp_path, log_store="s3", logs_s3_bucket="conductor-logs", aws_endpoint_url=aws
    )
    store = open_log_store(settings)
    store.append(JOB, 1, lines(1, 3), final=True)
    assert isinstance(store, S3LogStore) and store.is_complete(JOB, 1)
    with pytest.raises(ValueError, match="CONDUCTOR_LOGS_S3_BUCKET"):
        open_log_store(Settings(state_dir=tmp_path, log_store="s3"))


def test_lines_past_the_attempts_limit_are_counted_not_stored(store: LogStore):
    store.max_bytes = 10_000
    assert store.append(JOB, 1, lines(1, 60)) == 60
    # Past the limit every line is acknowledged (the agent moves on) but only counted.
    assert store.append(JOB, 1, lines(61, 2000)) == 2000
    assert store.append(JOB, 1, lines(2001, 2100), final=True) == 2100
    assert store.append(JOB, 1, lines(2090, 2100)) == 2100  # a re-send is neither stored nor counted again
    stored = seqs(store)
    dropped = store.dropped(JOB, 1)
    assert stored == list(range(1, len(stored) + 1)) and 60 < len(stored) < 2000
    assert dropped.count == 2100 - len(stored) and dropped.through_seq == 2100
    assert store.is_complete(JOB, 1)
    note = store.tail(JOB, 3)[-1]
    assert note.text.startswith(f"{dropped.count} more line(s) were counted, not stored")
    assert "limit of 10000 bytes (CONDUCTOR_MAX_LOG_BYTES_PER_ATTEMPT)" in note.text
    assert store.dropped(JOB, 2).count == 0
    if isinstance(store, LocalLogStore):
        # Stored up to the limit: the next line would not have fitted.
        size = store.path(JOB, 1).stat().st_size
        assert (
            size
            <= 10_000
            < size + len(encode_record(LogBlock.from_lines(lines(len(stored) + 1, len(stored) + 1))))
        )
