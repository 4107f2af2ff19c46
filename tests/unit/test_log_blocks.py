"""Log blocks (AppendLogBlock): stored as their messages, read back as the same lines, once and in order."""

import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conductor_worker.gateway.local_log_store import LocalLogStore
from conductor_worker.gateway.log_blocks import BadLogBlock, LogBlock, all_finite
from conductor_worker.gateway.log_calls import ReceivedLogBlock, decode_block
from conductor_worker.gateway.log_store import LogStore
from proto.conductor.v1 import agent_pb2

pytestmark = pytest.mark.timeout(60)

JOB = "job/ticket/jira/ENG-8"
# Text a JSON encoder must escape, and text that looks like the encoder's own separators.
HOSTILE = ['a"b\\c', "\n\r\t\x00\x1f", 'x", "y', "\\", "é 😀 \u2028\u2029", "", '{"seq":1}\n']


def block(first: int, texts: list[str], step: str = "code", stream: str = "stdout") -> LogBlock:
    return LogBlock.checked(first, texts, [1.5 + i for i in range(len(texts))], [(step, stream, len(texts))])


def test_stored_blocks_read_back_as_the_same_log_lines(tmp_path):
    mixed = LogBlock.checked(
        7,
        HOSTILE,
        [0.0, 1e16, 1795692879.0833678, 2.5, 3.0, 4.0, 5.0],
        [("clone", "stderr", 3), ("", "agent", 4)],
    )
    store = LocalLogStore(tmp_path / "logs")
    assert (
        store.append(JOB, 1, LogBlock.checked(1, [f"{i}" for i in range(6)], [1.0] * 6, [("s", "x", 6)])) == 6
    )
    assert store.append(JOB, 1, mixed) == 13
    read = store.read(JOB, 1, after_seq=6)
    assert [line.seq for line in read] == list(range(7, 14))
    assert [line.text for line in read] == HOSTILE
    assert [(line.step, line.stream) for line in read] == [("clone", "stderr")] * 3 + [("", "agent")] * 4
    assert [line.ts for line in read] == [0.0, 1e16, 1795692879.0833678, 2.5, 3.0, 4.0, 5.0]
    assert store.read(JOB, 1, after_seq=10) == read[4:]
    assert store.tail(JOB, 2) == read[-2:]


def test_a_received_block_is_stored_as_its_message():
    message = agent_pb2.LogBlock(
        first_seq=3,
        text=["a", "b"],
        ts=[1.0, 2.0],
        runs=[agent_pb2.LogRun(step="s", stream="stdout", count=2)],
    )
    data = message.SerializeToString()
    received = decode_block(ReceivedLogBlock.parse(data))()
    rebuilt = LogBlock.checked(3, ["a", "b"], [1.0, 2.0], [("s", "stdout", 2)])
    assert received.serialized() is data
    assert rebuilt.serialized() == data


def test_a_block_that_contradicts_itself_is_refused_with_the_reason():
    with pytest.raises(BadLogBlock, match="at least 1"):
        block(0, ["x"])
    with pytest.raises(BadLogBlock, match="2 texts but 1 times"):
        LogBlock.checked(1, ["a", "b"], [1.0], [("s", "stdout", 2)])
    with pytest.raises(BadLogBlock, match="add up"):
        LogBlock.checked(1, ["a", "b"], [1.0, 2.0], [("s", "stdout", 3)])
    with pytest.raises(BadLogBlock, match="add up"):
        LogBlock.checked(1, ["a"], [1.0], [("s", "stdout", 2), ("s", "stderr", -1)])
    with pytest.raises(BadLogBlock, match="longer than"):
        LogBlock.checked(1, ["a"], [1.0], [("s" * 256, "stdout", 1)])
    with pytest.raises(BadLogBlock, match="finite"):
        LogBlock.checked(1, ["a", "b"], [1.0, math.nan], [("s", "stdout", 2)])


def test_blocks_resent_overlapping_or_past_a_gap_are_stored_once_in_order(tmp_path):
    store: LogStore = LocalLogStore(tmp_path / "logs")
    texts = [f"line {i}" for i in range(1, 301)]
    assert store.append(JOB, 1, block(1, texts[:100])) == 100
    assert store.append(JOB, 1, block(1, texts[:100])) == 100  # the ack was lost: the same block again
    assert store.append(JOB, 1, block(201, texts[200:])) == 100  # a gap: nothing stored, ack unchanged
    # Re-sent from the ack in two pieces, the first overlapping what is stored, across a run boundary.
    overlap = LogBlock.checked(51, texts[50:150], [1.0] * 100, [("a", "stdout", 60), ("b", "stderr", 40)])
    assert store.append(JOB, 1, overlap) == 150
    assert store.append(JOB, 1, block(151, texts[150:]), final=True) == 300
    stored = store.read(JOB, 1)
    assert [line.seq for line in stored] == list(range(1, 301))
    assert [line.text for line in stored] == texts
    assert [line.step for line in stored[100:150]] == ["a"] * 10 + ["b"] * 40
    assert store.is_complete(JOB, 1)


def test_a_block_past_the_limit_is_stored_up_to_it_and_the_rest_counted(tmp_path):
    store = LocalLogStore(tmp_path / "logs", max_bytes=2000)
    assert store.append(JOB, 1, block(1, [f"{i:04d} " + "x" * 50 for i in range(100)])) == 100
    stored = store.read(JOB, 1)
    assert 0 < len(stored) < 100 and [line.seq for line in stored] == list(range(1, len(stored) + 1))
    assert store.path(JOB, 1).stat().st_size <= 2000
    dropped = store.dropped(JOB, 1)
    assert (dropped.count, dropped.through_seq) == (100 - len(stored), 100)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True), max_size=40))
def test_the_finite_check_of_a_blocks_times_agrees_with_math_isfinite(ts):
    assert all_finite(ts) == all(map(math.isfinite, ts))
    message = agent_pb2.LogBlock.FromString(
        agent_pb2.LogBlock(text=["x"] * len(ts), ts=ts).SerializeToString()
    )
    assert all_finite(message.ts) == all(map(math.isfinite, ts))  # as a received block holds them


@pytest.mark.parametrize(
    "bad", [math.inf, -math.inf, math.nan, struct.unpack("<d", b"\x01\x00\x00\x00\x00\x00\xf8\xff")[0]]
)
def test_a_block_with_one_time_not_finite_among_thousands_is_refused(bad):
    ts = [1795692879.0 + i / 7 for i in range(5000)]
    ts[4321] = bad
    with pytest.raises(BadLogBlock, match="not a finite number"):
        LogBlock.checked(1, ["x"] * 5000, ts, [("s", "stdout", 5000)])
    ts[4321] = 1e308
    assert len(LogBlock.checked(1, ["x"] * 5000, ts, [("s", "stdout", 5000)])) == 5000
