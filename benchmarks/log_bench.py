"""Log throughput through the gateway against raw loopback gRPC unary calls of the same payload.

Gateway figure: the agent's path for a burst of log lines already buffered (LogBuffer, spilling past
its 1 MiB bound; LogSender blocks, 4 in flight, the spilled ones read from the spill file as columns)
-> `AppendLogBlock` on the real gateway -> the local log store, which de-duplicates, encodes and fsyncs
(once per group of waiting blocks) before it acks. Raw figure: the same LogBlock messages (cut by the
same buffer, so the same sizes), already serialized, as unary calls one at a time to a loopback gRPC
server that only answers (it does not even parse them). MB/s counts the lines' text.

Each server runs in a process of its own, as the conductor's gateway does beside the agent: this process
plays the agent. `--one-process` runs both servers on an event loop in a thread of this process
instead (how the bench ran before): then the agent's and the gateway's Python share one interpreter
lock, which the raw server (that does nothing) hardly needs, so that ratio counts both sides' CPU as if
they ran on one core.
"""

import argparse
import asyncio
import multiprocessing
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from statistics import median
from typing import Any

import grpc

from agent_runtime.connection import GatewayConnection, encoded_log_block
from agent_runtime.log_buffer import LogBuffer, seq_span
from agent_runtime.log_sender import LogSender
from benchmarks.results import record
from conductor_worker.config import Settings
from conductor_worker.gateway.local_log_store import LocalLogStore
from conductor_worker.gateway.server import start_gateway
from contracts.ids import safe_name
from contracts.jobs import TaskFile
from security.tokens import mint_token
from stores.attempts import StagedAttempts
from tests.helpers import free_port

JOB = "job/bench/logs"
_RAW_METHOD = "/bench.Raw/Send"


class LoopThread:
    """An asyncio event loop in a daemon thread, for servers the synchronous agent code calls into."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)


def _bench_settings(state_dir: Path, listen: str) -> Settings:
    return Settings(state_dir=state_dir, gateway_listen=listen)


def start_bench_gateway(loop: LoopThread, state_dir: Path) -> tuple[Settings, grpc.aio.Server]:
    settings = _bench_settings(state_dir, f"127.0.0.1:{free_port()}")
    server, _ = loop.run(start_gateway(settings))
    return settings, server


async def _start_server(kind: str, state_dir: Path, listen: str) -> tuple[grpc.aio.Server, str]:
    """The gateway (on `state_dir`) or the raw server, listening; returns it and its address."""
    if kind == "gateway":
        server, _ = await start_gateway(_bench_settings(state_dir, listen))
        return server, listen
    server, port = await _start_raw_server()
    return server, f"127.0.0.1:{port}"


def _serve_in_child(kind: str, state_dir: str, listen: str, conn) -> None:
    """A child process's life: serve, say where, stop when the parent says so (or goes away)."""

    async def serve() -> None:
        server, address = await _start_server(kind, Path(state_dir), listen)
        conn.send(address)
        try:
            await asyncio.to_thread(conn.recv)
        except EOFError:
            pass
        await server.stop(grace=None)

    asyncio.run(serve())


@contextmanager
def served_in_process(kind: str, state_dir: Path, listen: str) -> Iterator[str]:
    """A server in a process of its own (spawned: grpc and fork do not mix); yields its address."""
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    child = context.Process(target=_serve_in_child, args=(kind, str(state_dir), listen, theirs), daemon=True)
    child.start()
    try:
        if not ours.poll(60):
            raise TimeoutError(f"the {kind} server did not start within 60 s")
        yield ours.recv()
    finally:
        ours.send("stop")
        child.join(30)
        if child.is_alive():
            child.kill()
            child.join()


def served_in_thread(loop: LoopThread) -> Callable[[str, Path, str], Iterator[str]]:
    """Servers on `loop`, a thread of this process (`--one-process`)."""

    @contextmanager
    def serve(kind: str, state_dir: Path, listen: str) -> Iterator[str]:
        server, address = loop.run(_start_server(kind, state_dir, listen))
        try:
            yield address
        finally:
            loop.run(server.stop(grace=None))

    return serve


def text_of(i: int, size: int) -> str:
    return f"{i:09d} " + "x" * (size - 10)


def through_gateway(settings: Settings, address: str, job: str, lines: int, size: int) -> tuple[float, int]:
    """Seconds to send `lines` buffered lines of job `job` through the gateway at `address` (serving
    `settings`' state dir), and how many of them had spilled to disk."""
    StagedAttempts(settings.open_blob_store()).stage(job, 1, [TaskFile(path="job.json", content="{}")])
    token = mint_token(settings.signing_secret(), job, 1, ttl_seconds=600)
    buffer = LogBuffer(settings.state_dir / f"spill-{safe_name(job)}.blocks")
    for i in range(1, lines + 1):
        buffer.append("spew", "stdout", text_of(i, size))
    final_seq = buffer.close("end")
    with GatewayConnection(address, token) as conn:
        conn.handshake()  # connect outside the timing, as the raw client does
        sender = LogSender(buffer, conn.start_append_logs)
        began = time.perf_counter()
        sender.start()
        assert sender.finish(timeout=600), "the log did not complete"
        elapsed = time.perf_counter() - began
    stored = LocalLogStore(settings.logs_path).read(job, 1)
    assert [line.seq for line in stored] == list(range(1, final_seq + 1))
    return elapsed, buffer.spilled_total


def raw_batches(state_dir: Path, lines: int, size: int) -> list[bytes]:
    """The LogBlock messages the sender sends for the same lines (cut by the same buffer), serialized."""
    buffer = LogBuffer(state_dir / "raw-spill.blocks")
    for i in range(1, lines + 1):
        buffer.append("spew", "stdout", text_of(i, size))
    buffer.close("end")
    batches = []
    while batch := buffer.next_batch(timeout=0):
        last = seq_span(batch)[1]
        batches.append(encoded_log_block(batch, last == buffer.final_seq))
        buffer.ack(last)
    return batches


async def _start_raw_server() -> tuple[grpc.aio.Server, int]:
    async def send(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return b""

    server = grpc.aio.server()
    handler = grpc.unary_unary_rpc_method_handler(send)  # no (de)serializers: bytes in, bytes out
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("bench.Raw", {"Send": handler})])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


def raw_unary(address: str, batches: list[bytes]) -> float:
    with grpc.insecure_channel(address) as channel:
        send = channel.unary_unary(_RAW_METHOD)
        send(b"", timeout=30)  # connect outside the timing, as the agent's channel already is
        began = time.perf_counter()
        for batch in batches:
            send(batch, timeout=30)
        return time.perf_counter() - began


def main(lines: int = 200_000, size: int = 100, rounds: int = 11, one_process: bool = False) -> None:
    """`rounds` rounds, each the raw calls and the gateway back to back (which goes first alternates):
    the figure is the median round, so a burst of other work on the machine moves it less."""
    loop = LoopThread() if one_process else None
    serve = served_in_thread(loop) if loop else served_in_process
    where = "one process" if one_process else "servers in their own processes"
    megabytes = lines * size / 1e6
    raw_times, gateway_times, ratios = [], [], []
    try:
        with tempfile.TemporaryDirectory() as state:
            settings = _bench_settings(Path(state), f"127.0.0.1:{free_port()}")
            batches = raw_batches(Path(state), lines, size)
            with (
                serve("raw", Path(state), "") as raw_address,
                serve("gateway", Path(state), settings.gateway_listen) as gateway_address,
            ):
                for n in range(rounds):
                    job = f"{JOB}-{n}"
                    if n % 2:
                        gateway, spilled = through_gateway(settings, gateway_address, job, lines, size)
                        raw = raw_unary(raw_address, batches)
                    else:
                        raw = raw_unary(raw_address, batches)
                        gateway, spilled = through_gateway(settings, gateway_address, job, lines, size)
                    raw_times.append(raw)
                    gateway_times.append(gateway)
                    ratios.append(raw / gateway)
                    print(
                        f"round {n + 1}: raw {megabytes / raw:6.1f} MB/s, gateway {megabytes / gateway:6.1f}"
                        f" MB/s = {raw / gateway:.2f} x raw"
                    )
    finally:
        if loop:
            loop.close()
    raw, gateway, ratio = median(raw_times), median(gateway_times), median(ratios)
    print(f"raw loopback gRPC unary, same batches ({where}), median: {megabytes / raw:7.1f} MB/s")
    print(
        f"logs through the gateway ({lines} lines, {megabytes:.0f} MB, {spilled} spilled), median:"
        f" {megabytes / gateway:7.1f} MB/s; median round {ratio:.2f} x raw"
        f" (rounds {min(ratios):.2f}-{max(ratios):.2f})"
    )
    record(
        "logs through the gateway" + (" (one process)" if one_process else ""),
        f"{megabytes / gateway:.1f} MB/s ({lines} lines; median of {rounds} rounds,"
        f" {min(ratios):.2f}-{max(ratios):.2f} x)",
        f"{megabytes / raw:.1f} MB/s loopback gRPC unary",
        ratio,
        ">= 0.3 x",
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--size", type=int, default=100, help="bytes of text per line")
    parser.add_argument("--rounds", type=int, default=11, help="raw and gateway runs, alternated")
    parser.add_argument(
        "--one-process", action="store_true", help="servers in a thread of this process (shared GIL)"
    )
    args = parser.parse_args()
    main(args.lines, args.size, args.rounds, args.one_process)
