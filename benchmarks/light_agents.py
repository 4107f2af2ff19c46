"""Light agents for benchmarks/heartbeat_bench.py: one process holding many agent sessions over gRPC.

Each session is what a per-job agent says when its work is quiet: Handshake, then a Heartbeat every
`beat` seconds, then UploadResult with a result and no bundle (FAILED, no changes: the job ends
NO_CHANGES without a publish). Each session has its own connection, as an agent in its own container has.
The beats keep a fixed schedule, each call bounded by one period: a beat the conductor answers late is
followed at once by the next. The real agent (agent_runtime/connection.py, Heartbeat) waits a period after
each answer, so under a slow conductor it beats less often; this load does not back off.

The agents are found the way ECS would start them: the conductor's Fargate launcher runs tasks on moto's
ECS, which runs nothing; `Fleet` lists the RUNNING tasks and starts a session with each task's token and
gateway from its RunTask overrides. A relaunched attempt is a new task, so it gets a session too, and
is counted.
"""

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field

import grpc

import agent_runtime
from proto.conductor.v1 import agent_pb2, agent_pb2_grpc

# A session's refusals that end it: the attempt is over (superseded, cancelled, relaunched).
ENDED = (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED)


@dataclass
class FleetStats:
    tasks_seen: int = 0
    handshaken: int = 0
    beats: int = 0
    beat_errors: Counter = field(default_factory=Counter)
    cancels: int = 0
    ended_by_conductor: int = 0
    results_accepted: int = 0
    result_errors: Counter = field(default_factory=Counter)
    beat_seconds: list[float] = field(default_factory=list)


class Fleet:
    def __init__(self, ecs, cluster: str, beat: float) -> None:
        self._ecs = ecs
        self._cluster = cluster
        self._beat = beat
        self._seen: set[str] = set()
        self._sessions: list[asyncio.Task] = []
        self.report = asyncio.Event()  # set: every session uploads its result and ends
        self.stats = FleetStats()

    async def discover(self, stop: asyncio.Event, interval: float = 1.0) -> None:
        """Start a session for each new RUNNING task until `stop` is set."""
        while not stop.is_set():
            for _arn, env in await asyncio.to_thread(self._new_tasks):
                self._sessions.append(
                    asyncio.create_task(
                        self._session(env["CONDUCTOR_AGENT_GATEWAY"], env["CONDUCTOR_AGENT_TOKEN"])
                    )
                )
            try:
                await asyncio.wait_for(stop.wait(), interval)
            except TimeoutError:
                pass

    def _new_tasks(self) -> list[tuple[str, dict[str, str]]]:
        arns = []
        for page in self._ecs.get_paginator("list_tasks").paginate(
            cluster=self._cluster, desiredStatus="RUNNING"
        ):
            arns += [arn for arn in page["taskArns"] if arn not in self._seen]
        found = []
        for start in range(0, len(arns), 100):
            tasks = self._ecs.describe_tasks(cluster=self._cluster, tasks=arns[start : start + 100])["tasks"]
            for task in tasks:
                container = task["overrides"]["containerOverrides"][0]
                env = {item["name"]: item["value"] for item in container.get("environment", [])}
                self._seen.add(task["taskArn"])
                found.append((task["taskArn"], env))
        self.stats.tasks_seen = len(self._seen)
        return found

    async def finish(self, timeout: float) -> None:
        """Every session reports its result and ends (within `timeout`)."""
        self.report.set()
        if self._sessions:
            await asyncio.wait(self._sessions, timeout=timeout)
        for task in self._sessions:
            task.cancel()

    async def _session(self, address: str, token: str) -> None:
        metadata = (("authorization", f"Bearer {token}"),)
        # Its own connection: grpc otherwise shares one per target across the process's channels.
        async with grpc.aio.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)]) as ch:
            stub = agent_pb2_grpc.AgentServiceStub(ch)
            try:
                await stub.Handshake(
                    agent_pb2.HandshakeRequest(agent_version=agent_runtime.__version__, hostname="light"),
                    metadata=metadata,
                    timeout=60,
                    wait_for_ready=True,
                )
            except grpc.aio.AioRpcError as err:
                self.stats.beat_errors[f"handshake {err.code().name}"] += 1
                return
            self.stats.handshaken += 1
            # Spread the beats over the period, as agents started at different times would.
            if await self._wait_report(random.uniform(0, self._beat)):
                return await self._upload(stub, metadata)
            while True:
                began = time.monotonic()
                try:
                    reply = await stub.Heartbeat(
                        agent_pb2.HeartbeatRequest(phase="running"), metadata=metadata, timeout=self._beat
                    )
                    self.stats.beats += 1
                    self.stats.beat_seconds.append(time.monotonic() - began)
                    if reply.cancel_requested:
                        self.stats.cancels += 1
                        return
                except grpc.aio.AioRpcError as err:
                    self.stats.beat_errors[err.code().name] += 1
                    if err.code() in ENDED:
                        self.stats.ended_by_conductor += 1
                        return
                if await self._wait_report(max(0.0, self._beat - (time.monotonic() - began))):
                    return await self._upload(stub, metadata)

    async def _wait_report(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self.report.wait(), seconds)
        except TimeoutError:
            return False
        return True

    async def _upload(self, stub, metadata) -> None:
        result = agent_pb2.AgentResult(
            status="FAILED", no_changes=True, failure_class="none", summary="light agent: no changes"
        )
        try:
            await stub.UploadResult(
                iter([agent_pb2.UploadResultRequest(result=result)]), metadata=metadata, timeout=120
            )
            self.stats.results_accepted += 1
        except grpc.aio.AioRpcError as err:
            self.stats.result_errors[err.code().name] += 1
