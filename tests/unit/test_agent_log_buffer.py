"""The agent's log buffer and sender: order, spill to disk under a memory bound, retry, drop only on ack."""

import json
import random
import threading
from concurrent.futures import Future
from pathlib import Path

import pytest

from agent_runtime.connection import GatewayRefused, GatewayUnavailable, encoded_log_block
from agent_runtime.log_buffer import Line, LogBuffer, SpilledBlock
from agent_runtime.log_sender import LogSender
from conductor_worker.gateway.log_calls import ReceivedLogBlock, decode_block

pytestmark = pytest.mark.timeout(60)

# Text protobuf must carry as it is: escapes, NUL, separators, non-ASCII.
HOSTILE = ['a"b\\c', "\n\r\t\x00\x1f", "é 😀 \u2028", "", '{"seq":1}']


def drain(buffer: LogBuffer, batch_ack=None) -> list[Line]:
    """Take every line the way the sender does: peek a batch, ack it."""
    got: list[Line] = []
    while batch := buffer.next_batch(timeout=0):
        got.extend(batch)
        buffer.ack(batch[-1].seq if batch_ack is None else batch_ack(batch))
    return got


def test_lines_are_numbered_from_one_and_come_back_in_order(tmp_path: Path):
    buffer = LogBuffer(tmp_path / "spill.blocks")
    for i in range(10):
        assert buffer.append("s", "stdout", f"line {i}") == i + 1
    lines = drain(buffer)
    assert [line.seq for line in lines] == list(range(1, 11))
    assert [line.text for line in lines] == [f"line {i}" for i in range(10)]
    assert buffer.pending == 0


def test_past_the_memory_bound_lines_spill_to_disk_and_memory_stays_bounded(tmp_path: Path):
    bound = 64 * 1024
    buffer = LogBuffer(tmp_path / "spill.blocks", memory_bytes=bound)
    peak = 0
    for i in range(1, 20_001):
        buffer.append("spew", "stdout", f"{i:08d} " + "x" * 40)
        peak = max(peak, buffer.memory_bytes)
    assert buffer.spilled_total > 19_000, "nearly everything should be on disk"
    assert (tmp_path / "spill.blocks").stat().st_size > 19_000 * 40

    got: list[Line] = []
    # Interleave new lines with the drain: they must queue behind the spilled ones.
    for batch_no in range(1000):
        batch = buffer.next_batch(timeout=0)
        if not batch:
            break
        got.extend(batch)
        buffer.ack(batch[-1].seq)
        if batch_no % 3 == 0:
            buffer.append("late", "stderr", f"late {batch_no}")
        peak = max(peak, buffer.memory_bytes)

    assert [line.seq for line in got] == list(range(1, buffer.last_seq + 1))
    assert got[19_999].text.startswith("00020000")
    assert peak <= bound + 200, f"memory grew to {peak} bytes with a bound of {bound}"
    assert not (tmp_path / "spill.blocks").exists(), "the spill file is removed once drained"


def test_a_partial_ack_keeps_the_rest_for_the_next_batch(tmp_path: Path):
    buffer = LogBuffer(tmp_path / "spill.blocks")
    for i in range(5):
        buffer.append("", "agent", str(i))
    first = buffer.next_batch(timeout=0)
    buffer.ack(first[1].seq)  # the conductor stored only two of them
    assert [line.seq for line in buffer.next_batch(timeout=0)] == [3, 4, 5]


def test_unacked_lines_can_be_saved_for_a_person(tmp_path: Path):
    buffer = LogBuffer(tmp_path / "spill.blocks", memory_bytes=2048)
    for i in range(1000):  # in memory, read back from the spill file, in it, waiting to be written
        buffer.append("s", "stdout", f"line {i}")
    buffer.ack(10)
    buffer.ack(buffer.next_batch(timeout=0)[-1].seq)  # reads a chunk back from the file
    acked = 1000 - buffer.pending
    assert buffer.save_unacked(tmp_path / "unsent.jsonl") == 1000 - acked
    saved = [json.loads(raw) for raw in (tmp_path / "unsent.jsonl").read_text().splitlines()]
    assert [line["seq"] for line in saved] == list(range(acked + 1, 1001))


def test_no_line_after_the_final_one(tmp_path: Path):
    buffer = LogBuffer(tmp_path / "spill.blocks")
    buffer.append("", "agent", "working")
    assert buffer.close("bye") == 2
    with pytest.raises(RuntimeError):
        buffer.append("", "agent", "too late")


class FlakyGateway:
    """Unreachable for the first `outage` calls; loses the ack of one call; stores like the real store."""

    def __init__(self, outage: int) -> None:
        self.outage = outage
        self.calls = 0
        self.stored: list[int] = []
        self.final_seen = False
        self.lock = threading.Lock()

    def send(self, lines: list[Line], final: bool) -> int:
        with self.lock:
            self.calls += 1
            if self.calls <= self.outage:
                raise GatewayUnavailable("down")
            for line in lines:
                if line.seq == len(self.stored) + 1:
                    self.stored.append(line.seq)
            self.final_seen |= final
            if self.calls == self.outage + 2:
                raise GatewayUnavailable("stored, but the ack was lost")
            return len(self.stored)


def test_sender_rides_out_an_outage_and_a_lost_ack_without_loss_or_duplicates(tmp_path: Path):
    buffer = LogBuffer(tmp_path / "spill.blocks", memory_bytes=4096)
    gateway = FlakyGateway(outage=4)
    sender = LogSender(buffer, gateway.send, initial_backoff=0.01, max_backoff=0.05)
    sender.start()
    for i in range(3000):
        buffer.append("s", "stdout", f"{i}")
    buffer.close("the end")
    assert sender.finish(timeout=30)
    assert gateway.stored == list(range(1, 3002))
    assert gateway.final_seen and buffer.pending == 0


class LosesTheFirstAck:
    """Stores what every call brings (in order, like the real store); the first call's ack is lost."""

    def __init__(self) -> None:
        self.calls = 0
        self.stored: list[int] = []

    def send(self, lines: list[Line], final: bool) -> int:
        self.calls += 1
        for line in lines:
            if line.seq == len(self.stored) + 1:
                self.stored.append(line.seq)
        if self.calls == 1:
            raise GatewayUnavailable("stored, but the ack was lost")
        return len(self.stored)


def test_a_lost_ack_whose_next_call_stored_the_final_line_completes_the_log(tmp_path: Path):
    """The calls in flight behind a failed one stored the rest, through the final line: the log is complete.
    (The sender used to resume and wait for lines that would never come: 3 hangs in 55 runs of the test
    above.)"""
    buffer = LogBuffer(tmp_path / "spill.blocks")
    for i in range(6000):  # more than one call's worth (BATCH_LINES), so several are in flight
        buffer.append("s", "stdout", f"{i}")
    buffer.close("the end")
    gateway = LosesTheFirstAck()
    sender = LogSender(buffer, gateway.send, initial_backoff=0.01, max_backoff=0.05)
    sender.start()
    assert sender.finish(timeout=10)
    assert gateway.stored == list(range(1, 6002)) and buffer.pending == 0 and gateway.calls >= 2


def test_sender_stops_when_the_token_is_refused(tmp_path: Path):
    buffer = LogBuffer(tmp_path / "spill.blocks")

    def refuse(lines, final):
        raise GatewayRefused("superseded attempt")

    sender = LogSender(buffer, refuse)
    sender.start()
    buffer.append("", "agent", "hello")
    assert not sender.finish(timeout=5)
    assert sender.refused is not None and buffer.pending == 1


def test_past_the_spill_bound_lines_are_counted_not_kept_and_the_log_says_so(tmp_path: Path):
    spill = tmp_path / "spill.blocks"
    buffer = LogBuffer(spill, memory_bytes=16 * 1024, spill_bytes=64 * 1024)
    kept = [buffer.append("spew", "stdout", f"{i:08d} " + "x" * 100) for i in range(1, 5001)]
    assert spill.stat().st_size <= 64 * 1024, "the spill file grew past its bound"
    assert 0 in kept and kept.count(0) == buffer.dropped_total > 4000
    dropped = buffer.dropped_total
    buffer.close("exiting")
    lines = drain(buffer)
    # No gap in the seqs: a dropped line takes none; the note comes right before the last line.
    assert [line.seq for line in lines] == list(range(1, buffer.final_seq + 1))
    assert lines[-2].text == (
        f"{dropped} log line(s) dropped: the unsent log reached the spill file's limit of 65536 bytes "
        "(CONDUCTOR_AGENT_LOG_SPILL_BYTES) while the conductor was away"
    )
    assert lines[-1].text == "exiting" and len(lines) == 5000 - dropped + 2


class ReorderingGateway:
    """Answers calls later and in any order, like several calls in flight: a call that reaches the store
    before the one ahead of it stores nothing past the gap. Stores like the real store (ack = stored through)."""

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)
        self.stored: list[int] = []
        self.in_flight_peak = 0
        self._waiting: list[tuple[list[Line], Future]] = []
        self._lock = threading.Lock()

    def start(self, lines: list[Line], final: bool) -> Future:
        future: Future = Future()
        with self._lock:
            self._waiting.append((lines, future))
            self.in_flight_peak = max(self.in_flight_peak, len(self._waiting))
            if len(self._waiting) >= 3 or final or self.random.random() < 0.3:
                self._answer_all()
        return _Ack(future, self)

    def _answer_all(self) -> None:
        self.random.shuffle(self._waiting)
        for lines, future in self._waiting:
            for line in lines:
                if line.seq == len(self.stored) + 1:
                    self.stored.append(line.seq)
            future.set_result(len(self.stored))
        self._waiting.clear()

    def flush(self) -> None:
        with self._lock:
            self._answer_all()


class _Ack:
    def __init__(self, future: Future, gateway: ReorderingGateway) -> None:
        self._future, self._gateway = future, gateway

    def result(self) -> int:
        if not self._future.done():
            self._gateway.flush()  # nothing else would answer it: the sender waits on this one
        return self._future.result()


@pytest.mark.parametrize("seed", range(5))
def test_blocks_in_flight_answered_out_of_order_are_stored_once_and_in_order(tmp_path: Path, seed: int):
    # Room in memory for a few blocks in flight (a block in flight stays in memory until acked).
    buffer = LogBuffer(tmp_path / "spill.blocks", memory_bytes=2 * 1024 * 1024)
    gateway = ReorderingGateway(seed)
    for i in range(30_000):  # buffered (mostly spilled) first, so there is always a next block to send
        buffer.append("s", "stdout", f"{i:06d} " + "y" * 30)
    buffer.close("the end")
    sender = LogSender(buffer, gateway.start, in_flight=4)
    sender.start()
    assert sender.finish(timeout=30)
    assert buffer.spilled_total > 0
    assert gateway.stored == list(range(1, 30_002))
    assert gateway.in_flight_peak > 1 and buffer.pending == 0


def test_spilled_lines_are_sent_from_the_file_and_read_again_after_a_partial_ack(tmp_path: Path):
    spill = tmp_path / "spill.blocks"
    buffer = LogBuffer(spill, memory_bytes=4096)
    for i in range(1, 2001):
        buffer.append("s", "stdout" if i % 7 else "stderr", f"line {i}")
    in_memory = buffer.next_batch(timeout=0)
    buffer.ack(in_memory[-1].seq)
    block = buffer.next_batch(timeout=0, after=in_memory[-1].seq)  # a block of columns, read from the file
    assert not isinstance(block, list) and block[0].seq == in_memory[-1].seq + 1
    assert [line.seq for line in block] == list(range(block[0].seq, block[-1].seq + 1))
    assert block[-1] == list(block)[-1] and block[5].text == f"line {block[5].seq}"
    assert {line.stream for line in block} == {"stdout", "stderr"}
    # The conductor stored part of it (a lost ack, a gap): the rest is read from the file again.
    partial = block[0].seq + 300
    buffer.ack(partial)
    again = buffer.next_batch(timeout=0, after=partial)
    assert again[0].seq == partial + 1 and [line.text for line in again][:3] == [
        f"line {partial + 1}",
        f"line {partial + 2}",
        f"line {partial + 3}",
    ]
    assert buffer.pending == 2000 - partial
    assert buffer.save_unacked(tmp_path / "unsent.jsonl") == 2000 - partial
    saved = [json.loads(raw)["seq"] for raw in (tmp_path / "unsent.jsonl").read_text().splitlines()]
    assert saved == list(range(partial + 1, 2001))
    assert spill.exists()
    assert [line.seq for line in drain(buffer)] == list(range(partial + 1, 2001))
    assert not spill.exists(), "the spill file is removed once every spilled line is acked"
    buffer.append("s", "stdout", "after the flood")  # memory again
    assert buffer.memory_bytes > 0 and isinstance(buffer.next_batch(timeout=0), list)


def test_a_spilled_block_is_sent_as_read_and_the_gateway_takes_it_as_one_block(tmp_path: Path):
    """A spilled block's message is the file's chunks behind a first seq, as they are: the gateway's own
    decoding reads it as one block with every line, across chunk boundaries and from an ack inside a chunk."""
    buffer = LogBuffer(tmp_path / "spill.blocks", memory_bytes=1024)
    texts = [f"line {i} " + HOSTILE[i % len(HOSTILE)] for i in range(1, 3001)]
    for i, text in enumerate(texts, start=1):
        buffer.append("clone" if i % 300 < 150 else "test", "stdout" if i % 7 else "stderr", text)
    first = buffer.next_batch(timeout=0)
    buffer.ack(first[-1].seq)
    for after in (first[-1].seq, first[-1].seq + 1000 + 17):  # a block of whole chunks; then a chunk's rest
        buffer.ack(after)
        spilled = buffer.next_batch(timeout=0, after=after)
        assert isinstance(spilled, SpilledBlock) and spilled.first_seq == after + 1
        data = encoded_log_block(spilled, final=False)
        assert data.endswith(spilled.fields), "the chunks are sent as the file holds them"
        received = decode_block(ReceivedLogBlock.parse(data))()
        assert (received.first_seq, received.last_seq) == (after + 1, spilled.last_seq)
        assert list(received.texts) == texts[after : spilled.last_seq] == [line.text for line in spilled]
        sources = [(step, stream) for step, stream, n in received.runs for _ in range(n)]
        assert sources == [(line.step, line.stream) for line in spilled]
        assert len(received.runs) > 2, "runs of several steps and streams"
