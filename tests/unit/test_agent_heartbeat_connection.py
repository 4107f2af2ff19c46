"""Heartbeats never queue behind log bytes: the agent beats on a gRPC connection of its own.

On one shared HTTP/2 connection a beat waits behind every log byte already queued (flow control is per
connection as well as per stream), and a beat later than its deadline is a missed beat: three of them and
the conductor relaunches a working agent (what a 600,000-line step once caused). Real gRPC on loopback:
the server records the client address (its TCP connection) of each call.
"""

import threading
from concurrent import futures

import grpc
import pytest

from agent_runtime.connection import GatewayConnection
from proto.conductor.v1 import agent_pb2, agent_pb2_grpc

pytestmark = pytest.mark.timeout(60)


class PeerRecorder(agent_pb2_grpc.AgentServiceServicer):
    def __init__(self) -> None:
        self.peers: dict[str, set[str]] = {"Heartbeat": set(), "AppendLogBlock": set()}
        self.lock = threading.Lock()

    def Heartbeat(self, request, context):
        with self.lock:
            self.peers["Heartbeat"].add(context.peer())
        return agent_pb2.HeartbeatResponse()

    def AppendLogBlock(self, request, context):
        with self.lock:
            self.peers["AppendLogBlock"].add(context.peer())
        return agent_pb2.LogAck(acked_through_seq=request.first_seq + len(request.text) - 1)


def test_heartbeats_and_log_blocks_travel_on_different_connections():
    recorder = PeerRecorder()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    agent_pb2_grpc.add_AgentServiceServicer_to_server(recorder, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with GatewayConnection(f"127.0.0.1:{port}", "token") as conn:
            lines = [(seq, "flood", "stdout", "x" * 100, 1.0) for seq in range(1, 2001)]
            pending = [conn.start_append_logs(lines, final=False) for _ in range(4)]
            conn.heartbeat("running", {}, timeout=5)
            assert [call.result() for call in pending] == [2000] * 4
            conn.heartbeat("running", {}, timeout=5)
    finally:
        server.stop(None)
    beats, logs = recorder.peers["Heartbeat"], recorder.peers["AppendLogBlock"]
    assert len(beats) == 1 and len(logs) == 1, recorder.peers
    assert beats.isdisjoint(logs), f"heartbeats shared the log connection {logs}"
