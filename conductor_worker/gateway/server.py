"""The agent gateway: gRPC `AgentService` over the blob store, the log store and the job's await activity
in Temporal.

Agents hold only a per-job token. Each call is checked against it (signature, expiry, and that the job
attempt is staged in the blob store and not superseded: security/job_access.py) before anything is read or
written. Any replica serves any agent: nothing an agent needs is on one conductor's disk. Bulky data (task
files, bundles) goes to the blob store, never through workflow history: with S3 the agent moves it
itself with presigned URLs; with the local store it streams through here.
The agent's handshake, heartbeats (with its step states) and result go to Temporal as calls on its
attempt's await activity (conductor_worker/gateway/agent_channel.py); nothing of them is written to this
conductor's disk but the accepted result (stores/job_store.py: result.json, which makes a retried upload a
duplicate and ends the attempt's model spending). Without a Temporal client (a gateway alone) handshakes and
heartbeats are answered and forgotten.
"""

import asyncio
import hashlib
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from opentelemetry import trace
from temporalio.client import Client
from temporalio.service import RPCError

from conductor_worker.config import Settings
from conductor_worker.gateway.agent_channel import AgentChannel, AttemptEnded
from conductor_worker.gateway.agent_results import result_from_proto
from conductor_worker.gateway.agent_spans import AgentSpans
from conductor_worker.gateway.log_calls import (
    KeepLogBlockBytes,
    LogCalls,
    ReceivedLogBlock,
    decode_block,
    decode_lines,
)
from conductor_worker.gateway.log_store import LogStore, open_log_store
from conductor_worker.metrics import GatewayMetrics, client_meter
from conductor_worker.tls import grpc_server_credentials, tls_enabled
from contracts.jobs import AgentResult, AgentStatus, FailureClass
from proto.conductor.v1 import agent_pb2, agent_pb2_grpc
from security.job_access import JobAccess, open_job_attempt
from security.tokens import TokenClaims, TokenError
from stores.attempts import BUNDLES_PER_ATTEMPT, StagedAttempts, bundle_key, bundles_prefix, file_key
from stores.blob_store import BlobMissing
from stores.job_store import JobAttemptDir
from stores.mailbox import JobMailbox
from stores.usage_store import AttemptUsageStore

log = logging.getLogger(__name__)
CHUNK_SIZE = 256 * 1024
SERVICE_NAME = "conductor.v1.AgentService"


class AgentGateway(agent_pb2_grpc.AgentServiceServicer):
    def __init__(
        self,
        settings: Settings,
        logs: LogStore | None = None,
        client: Client | None = None,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self._settings = settings
        self._secret = settings.signing_secret()
        self._attempts = StagedAttempts(settings.open_blob_store())
        self._blobs = self._attempts.blobs
        self._mailbox = JobMailbox(self._blobs)
        self._logs = logs if logs is not None else open_log_store(settings)
        self._usage = AttemptUsageStore(self._blobs)  # the model gateway's count, from any replica
        self._channel = (
            AgentChannel(client, self._logs.tail, self._usage.total) if client is not None else None
        )
        self._metrics = GatewayMetrics(client_meter(client)) if client is not None else None
        self._log_calls = LogCalls(self._logs, self._authorize)
        # The agent's steps as spans of its job's trace; without a tracer nothing is made.
        self._spans = AgentSpans(tracer) if tracer is not None else None

    async def _access(self, context: grpc.aio.ServicerContext) -> JobAccess:
        metadata = dict(context.invocation_metadata() or ())
        scheme, _, token = str(metadata.get("authorization", "")).partition(" ")
        if scheme.lower() != "bearer" or not token:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing bearer token")
        try:
            # In a thread: with the s3 blob store, an attempt not seen for a while costs a request.
            return await asyncio.to_thread(
                open_job_attempt, self._attempts, self._settings.jobs_dir, self._secret, token
            )
        except TokenError as err:
            log.warning("gateway refused a token: %s", err)
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(err))

    async def _authorize(self, context: grpc.aio.ServicerContext) -> tuple[TokenClaims, JobAttemptDir]:
        access = await self._access(context)
        return access.claims, access.job

    async def Handshake(self, request, context):
        access = await self._access(context)
        claims, job = access.claims, access.job
        if await self._beat(job, "handshake"):
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "the job no longer expects this attempt")
        log.info(
            "agent handshake: %s attempt %d from %s",
            claims.job_id,
            claims.attempt,
            request.hostname,
        )
        return agent_pb2.HandshakeResponse(
            job_id=claims.job_id,
            attempt=claims.attempt,
            files=await asyncio.to_thread(self._file_infos, access),
            heartbeat_interval_seconds=self._settings.heartbeat_interval_seconds,
            traceparent=access.staged.traceparent,
        )

    def _file_infos(self, access: JobAccess) -> list[agent_pb2.TaskFileInfo]:
        """The staged files; with a store that presigns, each with the URL the agent fetches it from."""
        expiry = self._settings.blob_url_expiry_seconds
        return [
            agent_pb2.TaskFileInfo(
                path=staged.path,
                size=staged.size,
                sha256=staged.sha256,
                url=self._blobs.presigned_get(
                    file_key(access.claims.job_id, access.claims.attempt, staged.path), expiry
                ),
            )
            for staged in access.staged.files
        ]

    async def DownloadFile(self, request, context):
        access = await self._access(context)
        try:
            access.staged.file(request.path)
            key = file_key(access.claims.job_id, access.claims.attempt, request.path)
        except (FileNotFoundError, ValueError) as err:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(err))
        offset, chunks = 0, _rechunked(self._blobs.chunks(key))
        try:
            # Each read in a thread: from S3 it is a network read.
            while chunk := await asyncio.to_thread(next, chunks, b""):
                yield agent_pb2.FileChunk(offset=offset, data=chunk)
                offset += len(chunk)
        except BlobMissing as err:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"task file {request.path!r} is not staged: {err}")
        finally:
            chunks.close()

    async def PrepareBundleUpload(self, request, context):
        access = await self._access(context)
        existing = access.job.result()
        if request.size > self._settings.max_bundle_bytes:
            await self._refuse_bundle(context, access.job, existing)
        if existing is not None:
            # The attempt has reported (this is a second agent of it, or a retry): the reported bundle stays
            # as it is. Without a URL the agent sends its result through UploadResult, which says duplicate.
            return agent_pb2.PrepareBundleUploadResponse()
        post = self._blobs.presigned_post(
            await self._new_bundle_key(context, access.claims, request.sha256),
            max_bytes=request.size,
            expires_seconds=self._settings.blob_url_expiry_seconds,
        )
        if post is None:
            return agent_pb2.PrepareBundleUploadResponse()
        return agent_pb2.PrepareBundleUploadResponse(url=post.url, fields=post.fields)

    async def Heartbeat(self, request, context):
        claims, job = await self._authorize(context)
        phase = request.phase or "running"
        stop = await self._beat(job, phase, _step_states(request.steps))
        steering = [
            agent_pb2.Steering(seq=entry["seq"], text=entry["text"], by=entry["by"])
            for entry in await asyncio.to_thread(self._mailbox.steering, claims.job_id)
            if entry["seq"] > request.steering_seen
        ]
        return agent_pb2.HeartbeatResponse(cancel_requested=stop, steering=steering)

    async def _beat(self, job: JobAttemptDir, phase: str, steps: dict[str, str] | None = None) -> bool:
        """The agent's beat to its await activity; True when the job asks the agent to stop.
        No steps: the last ones the agent reported stand."""
        if self._channel is None:
            return False
        try:
            stop = await self._channel.beat(job, phase, steps)
        except RPCError as err:  # Temporal unreachable: the agent keeps working, its next beat may pass
            log.warning("%s attempt %d: heartbeat not recorded: %s", job.job_id, job.attempt, err)
            self._metrics.heartbeat("not_recorded")
            return False
        self._metrics.heartbeat("stop" if stop else "recorded")
        return stop

    async def AppendLogs(self, request, context):
        return await self._log_calls.store(context, decode_lines(request), request.final)

    async def AppendLogBlock(self, request: ReceivedLogBlock, context):  # see KeepLogBlockBytes
        return await self._log_calls.store(context, decode_block(request), request.message.final)

    async def UploadResult(self, request_iterator, context):
        access = await self._access(context)
        claims, job = access.claims, access.job
        existing = job.result()
        job.root.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=job.root, prefix=".upload-")
        digest, size, result_msg, key = hashlib.sha256(), 0, None, ""
        try:
            with os.fdopen(fd, "wb") as tmp:
                async for message in request_iterator:
                    if message.HasField("bundle_chunk"):
                        if result_msg is not None:
                            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bundle after result")
                        size += len(message.bundle_chunk)
                        if size > self._settings.max_bundle_bytes:
                            await self._refuse_bundle(context, job, existing)
                        tmp.write(message.bundle_chunk)
                        digest.update(message.bundle_chunk)
                    elif message.HasField("result"):
                        result_msg = message.result
            if result_msg is None:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "upload ended without a result")
            if existing is not None:
                # A retried upload of the same attempt: the first report stands.
                return agent_pb2.UploadResultResponse(accepted=True, bundle_size=size, duplicate=True)
            if result_msg.bundle_uploaded:
                key = await self._key_of_bundle(context, claims, result_msg.bundle_sha256)
                size = await self._check_uploaded_bundle(context, job, key, result_msg)
            elif size:
                if digest.hexdigest() != result_msg.bundle_sha256:
                    await context.abort(grpc.StatusCode.DATA_LOSS, "bundle sha256 does not match")
                key = await self._new_bundle_key(context, claims, result_msg.bundle_sha256)
                await asyncio.to_thread(self._blobs.put_file, key, Path(tmp_name))
            result = result_from_proto(
                result_msg,
                key if size else "",
                max_chars=self._settings.max_result_text_chars,
                model_usage=await asyncio.to_thread(self._usage.total, job.job_id, job.attempt, True),
            )
        finally:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
        await self._report(context, job, result, _step_states(result_msg.steps))
        if self._spans is not None:  # accepted: the only report of this attempt that gets here
            self._spans.record(access.staged, result_msg, now=time.time())
        job.store_result(result)
        await self._mark_ended(job)
        log.info(
            "agent result: %s attempt %d %s (%d bundle bytes)",
            claims.job_id,
            claims.attempt,
            result.status,
            size,
        )
        return agent_pb2.UploadResultResponse(accepted=True, bundle_size=size)

    async def _check_uploaded_bundle(self, context, job: JobAttemptDir, key: str, msg) -> int:
        """The bundle the agent put in the blob store itself: there, of the size it said, within the limit.
        Its sha256 is checked where its bytes are read, by the publisher."""
        stored = await asyncio.to_thread(self._blobs.size, key)
        if stored is None:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION, "bundle_uploaded, but no bundle is stored"
            )
        if stored > self._settings.max_bundle_bytes:
            await asyncio.to_thread(self._blobs.delete, key)
            await self._refuse_bundle(context, job, job.result())
        if stored != msg.bundle_size:
            await context.abort(
                grpc.StatusCode.DATA_LOSS,
                f"stored bundle has {stored} bytes, the result says {msg.bundle_size}",
            )
        return stored

    async def _key_of_bundle(self, context, claims: TokenClaims, sha256: str) -> str:
        try:
            return bundle_key(claims.job_id, claims.attempt, sha256)
        except ValueError as err:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"bundle: {err}")

    async def _new_bundle_key(self, context, claims: TokenClaims, sha256: str) -> str:
        """Where a bundle of this sha256 goes: each its own key, so no agent replaces a bundle another one
        reported; an attempt's bundles are bounded in number (each by CONDUCTOR_MAX_BUNDLE_BYTES)."""
        key = await self._key_of_bundle(context, claims, sha256)
        stored = await asyncio.to_thread(self._blobs.keys, bundles_prefix(claims.job_id, claims.attempt))
        if key not in stored and len(stored) >= BUNDLES_PER_ATTEMPT:
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"bundle refused: attempt {claims.attempt} holds {len(stored)} bundles already "
                f"(at most {BUNDLES_PER_ATTEMPT} an attempt)",
            )
        return key

    async def _report(
        self, context, job: JobAttemptDir, result: AgentResult, steps: dict[str, str] | None = None
    ) -> None:
        """Complete the attempt's await activity with the result (and the final step states, for `status`);
        the agent hears when it is refused."""
        if self._channel is None:
            return
        try:
            await self._channel.report(job, result, steps)
        except AttemptEnded as err:
            log.warning("result refused: %s", err)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"result refused: {err}")
        except (RPCError, TimeoutError) as err:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"result not recorded yet, send it again: {err}")

    async def _mark_ended(self, job: JobAttemptDir) -> None:
        """Tell every replica's model gateway the attempt has ended. The result is recorded already: a store
        outage costs only the marker (this replica still refuses; the budget bounds the others)."""
        try:
            await asyncio.to_thread(self._attempts.mark_ended, job.job_id, job.attempt)
        except Exception as err:  # boto's or the file system's: the store is the one thing that failed
            log.warning("%s attempt %d: ended marker not stored: %s", job.job_id, job.attempt, err)

    async def _refuse_bundle(self, context, job: JobAttemptDir, existing: AgentResult | None) -> None:
        """Past the limit nothing more is read: the attempt fails with the reason, the agent is told."""
        limit = self._settings.max_bundle_bytes
        reason = f"bundle refused: larger than the limit of {limit} bytes (CONDUCTOR_MAX_BUNDLE_BYTES)"
        if existing is None:
            failed = AgentResult(status=AgentStatus.FAILED, summary=reason, failure_class=FailureClass.SCRIPT)
            if self._channel is not None:
                try:
                    await self._channel.report(job, failed)
                except (AttemptEnded, RPCError, TimeoutError) as err:
                    log.warning("%s attempt %d: refusal not recorded: %s", job.job_id, job.attempt, err)
            job.store_result(failed)
            await self._mark_ended(job)
        log.warning("%s attempt %d: %s", job.job_id, job.attempt, reason)
        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, reason)


def _rechunked(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """The blob's chunks cut to the gateway's message size."""
    for chunk in chunks:
        for start in range(0, len(chunk), CHUNK_SIZE):
            yield chunk[start : start + CHUNK_SIZE]


def _step_states(steps) -> dict[str, str]:
    return {step.name: step.status for step in steps}


async def start_gateway(
    settings: Settings, client: Client | None = None, tracer: trace.Tracer | None = None
) -> tuple[grpc.aio.Server, int]:
    """Start the gRPC gateway with health checking; returns the server and its bound port.

    With `client`, the agent channel goes through Temporal; without, handshakes and beats are only answered.
    With `tracer`, the agents' steps become spans of their jobs' traces (conductor_worker/gateway/agent_spans.py)."""
    # Past this a message is refused with RESOURCE_EXHAUSTED before it is parsed (bundles come in chunks).
    limit = settings.grpc_max_receive_bytes
    server = grpc.aio.server(
        options=[("grpc.max_receive_message_length", limit)], interceptors=[KeepLogBlockBytes()]
    )
    agent_pb2_grpc.add_AgentServiceServicer_to_server(
        AgentGateway(settings, client=client, tracer=tracer), server
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if tls_enabled(settings):
        port = server.add_secure_port(settings.gateway_listen, grpc_server_credentials(settings))
    else:
        port = server.add_insecure_port(settings.gateway_listen)
    if port == 0:
        raise RuntimeError(f"gateway could not bind {settings.gateway_listen}")
    await server.start()
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    mode = ("mTLS" if settings.tls_client_ca_file else "TLS") if tls_enabled(settings) else "plaintext"
    log.info(
        "agent gateway listening on %s (%s)", settings.gateway_listen.rsplit(":", 1)[0] + f":{port}", mode
    )
    return server, port
