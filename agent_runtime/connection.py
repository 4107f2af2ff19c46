"""The agent's one gRPC connection to the conductor gateway, and the heartbeat thread that uses it.

Protobuf stays at this edge: callers pass and receive `contracts` models, except for the handshake's
`TaskFileInfo` list, which is only ever handed back to `download_file`.
"""

import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import groupby
from operator import itemgetter
from pathlib import Path

import grpc

import agent_runtime
from agent_runtime import blob_transfer
from agent_runtime.blob_transfer import BlobTransferError, TaskFileIntegrityError, write_checked
from agent_runtime.log_buffer import SpilledBlock
from contracts.jobs import AgentResult
from contracts.steps import StepResult
from proto.conductor.v1 import agent_pb2, agent_pb2_grpc

log = logging.getLogger(__name__)

UPLOAD_CHUNK_BYTES = 256 * 1024
# seq, step, stream, text, ts: agent_runtime.log_buffer.Line, kept as a plain tuple at this edge.
LogLineFields = tuple[int, str, str, str, float]
# Transfers get a deadline that grows with their size; below this rate something is wrong.
_MIN_TRANSFER_BYTES_PER_SECOND = 256 * 1024
# grpc's own retry: a gateway that restarts between calls answers UNAVAILABLE for a moment.
# Streams are retried only until their first response (or within grpc's retry buffer).
_SERVICE_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [{"service": "conductor.v1.AgentService"}],
                "retryPolicy": {
                    "maxAttempts": 5,
                    "initialBackoff": "0.2s",
                    "maxBackoff": "5s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
)
# After an outage grpc waits up to 2 minutes between reconnect attempts by default; a returning
# gateway should see our heartbeats, logs and result within seconds.
_CHANNEL_OPTIONS = [
    ("grpc.enable_retries", 1),
    ("grpc.service_config", _SERVICE_CONFIG),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
    # An address naming several conductors (`ipv4:a:1,b:2`) spreads the calls over all that answer;
    # any replica serves any call (conductor_worker/gateway/server.py). One address: the same as pick_first.
    ("grpc.lb_policy_name", "round_robin"),
]
DOWNLOAD_ATTEMPTS = 5
_REFUSED = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
_UNREACHABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


class GatewayError(Exception):
    """A gateway call failed; the message is one line fit for the operator."""


class GatewayRefused(GatewayError):
    """The gateway refused our token (forged, expired or superseded by a newer attempt)."""


class GatewayUnavailable(GatewayError):
    """The gateway could not be reached within the call's deadline."""


@dataclass(frozen=True)
class TlsFiles:
    """TLS to the gateway: the CA that signed its certificate and, for mTLS, our own certificate and key."""

    ca: Path
    cert: Path | None = None
    key: Path | None = None

    def __post_init__(self) -> None:
        if bool(self.cert) != bool(self.key):
            raise ValueError("a client certificate needs its key, and a key its certificate")

    def ssl_context(self) -> ssl.SSLContext:
        """For HTTPS (the pool agent's REST calls): verify the conductor, present our certificate."""
        context = ssl.create_default_context(cafile=str(self.ca))
        if self.cert:
            context.load_cert_chain(str(self.cert), str(self.key))
        return context

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca.read_bytes(),
            private_key=self.key.read_bytes() if self.key else None,
            certificate_chain=self.cert.read_bytes() if self.cert else None,
        )


class GatewayConnection:
    """A sync channel to the gateway; every call carries the per-job token."""

    def __init__(
        self,
        address: str,
        token: str,
        *,
        call_timeout: float = 30.0,
        connect_timeout: float = 60.0,
        tls: TlsFiles | None = None,
    ) -> None:
        self.address = address
        self._call_timeout = call_timeout
        self._connect_timeout = connect_timeout
        self._metadata = (("authorization", f"Bearer {token}"),)
        self._channel = _channel(address, tls, _CHANNEL_OPTIONS)
        self._stub = agent_pb2_grpc.AgentServiceStub(self._channel)
        # AppendLogBlock with the request already serialized: a spilled block is sent as the file holds it.
        self._append_log_block = self._channel.unary_unary(
            "/conductor.v1.AgentService/AppendLogBlock", response_deserializer=agent_pb2.LogAck.FromString
        )
        # Heartbeats get a connection of their own: on the shared one a beat waits behind every log
        # byte already queued (HTTP/2 flow control is per connection too), and a beat late past its
        # deadline is a missed beat. Three missed beats and the conductor relaunches a working agent.
        self._beat_channel = _channel(
            address, tls, [*_CHANNEL_OPTIONS, ("grpc.use_local_subchannel_pool", 1)]
        )
        self._beat_stub = agent_pb2_grpc.AgentServiceStub(self._beat_channel)

    def close(self) -> None:
        self._channel.close()
        self._beat_channel.close()

    def __enter__(self) -> "GatewayConnection":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def handshake(self) -> agent_pb2.HandshakeResponse:
        request = agent_pb2.HandshakeRequest(
            agent_version=agent_runtime.__version__, hostname=socket.gethostname()
        )
        # The launcher may start us before the gateway listens (or while it restarts): wait for it,
        # but not forever, so a wrong address ends as a clear error.
        with self._translate("handshake"):
            return self._stub.Handshake(
                request,
                metadata=self._metadata,
                timeout=self._connect_timeout,
                wait_for_ready=True,
            )

    def download_file(self, info: agent_pb2.TaskFileInfo, dest: Path) -> Path:
        """Fetch one task file to `dest` (from its presigned URL, or streamed by the gateway); on any
        mismatch nothing is left at `dest`.

        grpc retries a stream only until its first response: a stream cut mid-way (the conductor serving
        it was killed after the first chunk, seen in test_conductor_failover) is fetched again whole, from
        whichever conductor answers next, up to DOWNLOAD_ATTEMPTS times."""
        for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
            try:
                if info.url:
                    timeout = self._transfer_timeout(info.size)
                    return blob_transfer.download_url(
                        info.url, dest, info.size, info.sha256, info.path, timeout
                    )
                return self._download_once(info, dest)
            except (GatewayUnavailable, BlobTransferError) as err:
                if attempt == DOWNLOAD_ATTEMPTS:
                    raise GatewayUnavailable(str(err)) from err
                log.warning("download of %s cut (%s); fetching it again (%d)", info.path, err, attempt)
                time.sleep(min(0.2 * 2**attempt, 5.0))
        raise AssertionError("unreachable")

    def _download_once(self, info: agent_pb2.TaskFileInfo, dest: Path) -> Path:
        with self._translate(f"download of {info.path}"):
            # wait_for_ready: a handshake just before a drain stopped the gateway must not end the
            # attempt; wait (within the deadline) for the next conductor at the same address.
            chunks = self._stub.DownloadFile(
                agent_pb2.DownloadFileRequest(path=info.path),
                metadata=self._metadata,
                timeout=self._transfer_timeout(info.size),
                wait_for_ready=True,
            )
            try:
                return write_checked(dest, _in_order(chunks, info.path), info.size, info.sha256, info.path)
            finally:
                chunks.cancel()  # a no-op once the stream ended; frees it when we stop early

    def upload_result(
        self,
        result: AgentResult,
        bundle: Path | None,
        steps: dict[str, str],
        *,
        ran: Sequence[StepResult] = (),
        max_timeout: float | None = None,
    ) -> agent_pb2.UploadResultResponse:
        """Put the bundle in the blob store (with the gateway's presigned POST) or send its chunks, then the
        result carrying the bundle's sha256 and the step states (with the times and exit codes of the
        steps that `ran`: the conductor's trace of the job shows them)."""
        timeout = self._transfer_timeout(bundle.stat().st_size if bundle is not None else 0)
        if max_timeout is not None:
            timeout = min(timeout, max_timeout)
        # Hashed once: the presigned upload and the chunks through the gateway both carry it.
        sha256 = blob_transfer.sha256_file(bundle) if bundle is not None else ""
        states = _step_states(steps, ran)
        requests = _upload_requests(result, bundle, sha256, states)
        if bundle is not None:
            size = bundle.stat().st_size
            post = self._prepare_bundle_upload(size, sha256, min(self._call_timeout, timeout))
            if post is not None:
                try:
                    blob_transfer.post_file(post.url, post.fields, bundle, timeout)
                except BlobTransferError as err:
                    raise GatewayUnavailable(str(err)) from err
                stored = to_proto_result(result, sha256, states)
                stored.bundle_uploaded, stored.bundle_size = True, size
                requests = iter([agent_pb2.UploadResultRequest(result=stored)])
        # wait_for_ready: while the gateway is away, wait for it (within the deadline) instead of failing.
        with self._translate("result upload"):
            return self._stub.UploadResult(
                requests,
                metadata=self._metadata,
                timeout=timeout,
                wait_for_ready=True,
            )

    def _prepare_bundle_upload(
        self, size: int, sha256: str, timeout: float
    ) -> agent_pb2.PrepareBundleUploadResponse | None:
        """The presigned POST for the bundle; None: send it through the gateway (a `local` blob store, or
        a conductor from before PrepareBundleUpload)."""
        request = agent_pb2.PrepareBundleUploadRequest(size=size, sha256=sha256)
        try:
            with self._translate("bundle upload"):
                answer = self._stub.PrepareBundleUpload(
                    request, metadata=self._metadata, timeout=timeout, wait_for_ready=True
                )
        except GatewayError as err:
            if (
                isinstance(err.__cause__, grpc.RpcError)
                and err.__cause__.code() == grpc.StatusCode.UNIMPLEMENTED
            ):
                return None
            raise
        return answer if answer.url else None

    def heartbeat(
        self, phase: str, steps: dict[str, str], *, steering_seen: int = 0, timeout: float | None = None
    ) -> agent_pb2.HeartbeatResponse:
        with self._translate("heartbeat"):
            return self._beat_stub.Heartbeat(
                agent_pb2.HeartbeatRequest(
                    phase=phase, steps=_step_states(steps), steering_seen=steering_seen
                ),
                metadata=self._metadata,
                timeout=timeout or self._call_timeout,
            )

    def append_logs(self, lines: Sequence[LogLineFields], final: bool) -> int:
        """Send consecutive log lines; returns the highest seq the conductor has stored without gaps."""
        return self.start_append_logs(lines, final).result()

    def start_append_logs(self, lines: Sequence[LogLineFields], final: bool) -> "PendingAck":
        """Send consecutive log lines as one block now, without waiting for the ack.

        Calls started one after another leave in that order, so a sender can keep several in flight.
        """
        call = self._append_log_block.future(
            encoded_log_block(lines, final), metadata=self._metadata, timeout=self._call_timeout
        )
        return PendingAck(self, call)

    def _transfer_timeout(self, size: int) -> float:
        return self._call_timeout + size / _MIN_TRANSFER_BYTES_PER_SECOND

    @contextmanager
    def _translate(self, what: str) -> Iterator[None]:
        try:
            yield
        except grpc.RpcError as err:
            code, details = err.code(), err.details()  # type: ignore[attr-defined]
            if code in _REFUSED:
                raise GatewayRefused(f"gateway refused the token: {details}") from err
            if code in _UNREACHABLE:
                raise GatewayUnavailable(
                    f"cannot reach the gateway at {self.address} ({what}): {details}"
                ) from err
            raise GatewayError(f"gateway {what} failed: {code.name}: {details}") from err


def encoded_log_block(lines: Sequence[LogLineFields], final: bool) -> bytes:
    """Consecutive lines as one serialized `LogBlock`; a `SpilledBlock` is serialized already."""
    if isinstance(lines, SpilledBlock):
        return lines.message(final)
    return log_block(lines, final).SerializeToString()


def log_block(lines: Sequence[LogLineFields], final: bool) -> agent_pb2.LogBlock:
    """Consecutive lines as one `LogBlock`: columns, and runs of lines from one step and stream."""
    # Columns taken with C-level loops (map, itemgetter): no Python code per line.
    sources = list(map(itemgetter(1, 2), lines))
    runs = [
        agent_pb2.LogRun(step=step, stream=stream, count=len(list(run)))
        for (step, stream), run in groupby(sources)
    ]
    return agent_pb2.LogBlock(
        first_seq=lines[0][0] if lines else 1,
        text=list(map(itemgetter(3), lines)),
        ts=list(map(itemgetter(4), lines)),
        runs=runs,
        final=final,
    )


class PendingAck:
    """An `AppendLogBlock` call in flight; `result()` waits for the conductor's ack (or its error)."""

    def __init__(self, conn: GatewayConnection, call: grpc.Future) -> None:
        self._conn = conn
        self._call = call

    def result(self) -> int:
        with self._conn._translate("log upload"):
            return self._call.result().acked_through_seq


def _upload_requests(
    result: AgentResult, bundle: Path | None, bundle_sha256: str, steps: list[agent_pb2.StepState]
) -> Iterator[agent_pb2.UploadResultRequest]:
    """The bundle's chunks, then the result; the gateway checks the chunks against `bundle_sha256`."""
    if bundle is not None:
        with bundle.open("rb") as chunks:
            while chunk := chunks.read(UPLOAD_CHUNK_BYTES):
                yield agent_pb2.UploadResultRequest(bundle_chunk=chunk)
    yield agent_pb2.UploadResultRequest(result=to_proto_result(result, bundle_sha256, steps))


def _in_order(chunks: Iterator[agent_pb2.FileChunk], name: str) -> Iterator[bytes]:
    offset = 0
    for chunk in chunks:
        if chunk.offset != offset:
            raise TaskFileIntegrityError(f"{name}: chunk at offset {chunk.offset}, expected {offset}")
        offset += len(chunk.data)
        yield chunk.data


def _channel(address: str, tls: TlsFiles | None, options: list[tuple[str, object]]) -> grpc.Channel:
    if tls is None:
        return grpc.insecure_channel(address, options=options)
    return grpc.secure_channel(address, tls.channel_credentials(), options=options)


def _step_states(steps: dict[str, str], ran: Sequence[StepResult] = ()) -> list[agent_pb2.StepState]:
    """The steps' states in spec order; a step that ran also with its wall-clock times and exit code."""
    runs = {step.name: step for step in ran if step.started_at}
    states = []
    for name, status in steps.items():
        state = agent_pb2.StepState(name=name, status=status)
        if (run := runs.get(name)) is not None:
            state.started_at, state.ended_at = run.started_at, run.started_at + run.duration_seconds
            if run.exit_code is not None:
                state.exit_code = run.exit_code
        states.append(state)
    return states


def to_proto_result(
    result: AgentResult, bundle_sha256: str, steps: list[agent_pb2.StepState]
) -> agent_pb2.AgentResult:
    # bundle_key is the conductor's to fill in: where the bundle is in its blob store.
    return agent_pb2.AgentResult(
        status=result.status.value,
        exit_code=result.exit_code,
        stdout_tail=result.stdout_tail,
        stderr_tail=result.stderr_tail,
        summary=result.summary,
        failure_class=result.failure_class.value,
        bundle_sha256=bundle_sha256,
        branch=result.branch,
        commit_sha=result.commit_sha,
        duration_seconds=result.duration_seconds,
        steps=steps,
        no_changes=result.no_changes,
    )


class Heartbeater:
    """A daemon thread beating every interval with the current phase and step states, riding out outages."""

    def __init__(
        self,
        conn: GatewayConnection,
        interval_seconds: float,
        phase: str = "starting",
        on_steering: Callable[[list[agent_pb2.Steering]], None] | None = None,
    ):
        # Plain attributes: the job thread replaces them (never mutates), the beat thread reads them.
        self.phase = phase
        self.steps: dict[str, str] = {}
        self.cancel_requested = False
        self.steering_seen = 0
        self._on_steering = on_steering
        self._conn = conn
        self._interval = interval_seconds if interval_seconds > 0 else 5.0
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()

    def _run(self) -> None:
        failing = False
        while not self._stopped.is_set():
            try:
                # No longer than a beat: a hung call must not delay the next beat or stop().
                response = self._conn.heartbeat(
                    self.phase, self.steps, steering_seen=self.steering_seen, timeout=self._interval
                )
            except GatewayError as err:
                # The conductor notices silence through its own heartbeat timeout; we keep working.
                if not failing:
                    log.warning("heartbeat failed, retrying every %.0fs: %s", self._interval, err)
                failing = True
            else:
                if failing:
                    log.info("heartbeat: gateway reachable again")
                failing = False
                if response.steering:
                    self.steering_seen = max(entry.seq for entry in response.steering)
                    if self._on_steering is not None:
                        self._on_steering(list(response.steering))
                if response.cancel_requested and not self.cancel_requested:
                    log.warning("heartbeat: the conductor asked this job to stop")
                    self.cancel_requested = True
            self._stopped.wait(self._interval)
