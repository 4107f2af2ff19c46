"""The agent checks every task file path before writing anything, then each file's sha256."""

import hashlib
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from agent_runtime.connection import GatewayConnection, TaskFileIntegrityError
from agent_runtime.task_files import write_task_files
from contracts.task_paths import TaskFilePathError
from proto.conductor.v1 import agent_pb2, agent_pb2_grpc

TOKEN = "job-token"


class RecordingConn:
    """A stand-in for GatewayConnection: writes known bytes and records every download."""

    def __init__(self, contents: dict[str, bytes]) -> None:
        self.contents = contents
        self.downloads: list[str] = []

    def download_file(self, info: agent_pb2.TaskFileInfo, dest: Path) -> Path:
        self.downloads.append(info.path)
        dest.write_bytes(self.contents[info.path])
        return dest


def info_for(path: str, data: bytes = b"x") -> agent_pb2.TaskFileInfo:
    return agent_pb2.TaskFileInfo(path=path, size=len(data), sha256=hashlib.sha256(data).hexdigest())


@pytest.mark.parametrize(
    "bad_path",
    ["/etc/passwd", "../escape.md", "a/../b", "./x", "", "a\\b", "~/x", "a//b"],
)
def test_one_bad_path_rejects_the_whole_set_before_any_write(tmp_path: Path, bad_path: str):
    conn = RecordingConn({"job.json": b"{}", "prompt.md": b"hi"})
    dest = tmp_path / "task"
    dest.mkdir()
    # The good files come first: nothing of them may be written either.
    infos = [info_for("job.json"), info_for("prompt.md"), info_for(bad_path)]

    with pytest.raises(TaskFilePathError):
        write_task_files(conn, infos, dest)

    assert conn.downloads == []
    assert list(dest.iterdir()) == []


def test_a_path_listed_twice_is_rejected(tmp_path: Path):
    conn = RecordingConn({"job.json": b"{}"})
    with pytest.raises(TaskFilePathError):
        write_task_files(conn, [info_for("job.json"), info_for("job.json")], tmp_path)
    assert conn.downloads == []


def test_good_files_are_downloaded_under_dest(tmp_path: Path):
    contents = {"job.json": b'{"a": 1}', "context/logs/alarm.json": b"[]"}
    conn = RecordingConn(contents)
    dest = tmp_path / "task"

    written = write_task_files(conn, [info_for(p, d) for p, d in contents.items()], dest)

    assert conn.downloads == list(contents)
    assert written == {p: dest.joinpath(*p.split("/")) for p in contents}
    assert {p: path.read_bytes() for p, path in written.items()} == contents


class FileServer(agent_pb2_grpc.AgentServiceServicer):
    """Serves `files` in small chunks to callers holding TOKEN."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files

    def DownloadFile(self, request, context) -> Iterator[agent_pb2.FileChunk]:
        if dict(context.invocation_metadata()).get("authorization") != f"Bearer {TOKEN}":
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "bad token")
        data = self.files[request.path]
        for offset in range(0, len(data), 3):
            yield agent_pb2.FileChunk(offset=offset, data=data[offset : offset + 3])


@pytest.fixture
def gateway() -> Iterator[tuple[str, FileServer]]:
    servicer = FileServer({"job.json": b'{"job_id": "j"}'})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    agent_pb2_grpc.add_AgentServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}", servicer
    server.stop(grace=None)


def test_download_checks_size_and_sha256(gateway, tmp_path: Path):
    address, servicer = gateway
    data = servicer.files["job.json"]
    with GatewayConnection(address, TOKEN, call_timeout=5) as conn:
        conn.download_file(info_for("job.json", data), tmp_path / "job.json")
    assert (tmp_path / "job.json").read_bytes() == data


@pytest.mark.parametrize(
    "announced",
    [
        pytest.param(lambda d: info_for("job.json", d[:-1] + b"!"), id="wrong sha256"),
        pytest.param(lambda d: info_for("job.json", d[:-4]), id="longer than announced"),
        pytest.param(lambda d: info_for("job.json", d + b"more"), id="shorter than announced"),
    ],
)
def test_a_mismatching_download_leaves_nothing(gateway, tmp_path: Path, announced):
    address, servicer = gateway
    with GatewayConnection(address, TOKEN, call_timeout=5) as conn:
        with pytest.raises(TaskFileIntegrityError):
            conn.download_file(announced(servicer.files["job.json"]), tmp_path / "job.json")
    assert list(tmp_path.iterdir()) == []


class CuttingFileServer(FileServer):
    """Cuts the first stream of each file after its first chunk, as a conductor killed mid-stream does."""

    def __init__(self, files: dict[str, bytes]) -> None:
        super().__init__(files)
        self.calls = 0

    def DownloadFile(self, request, context) -> Iterator[agent_pb2.FileChunk]:
        self.calls += 1
        chunks = super().DownloadFile(request, context)
        yield next(chunks)
        if self.calls == 1:
            context.abort(grpc.StatusCode.UNAVAILABLE, "Stream removed")
        yield from chunks


def test_a_stream_cut_mid_way_is_fetched_again_whole(tmp_path: Path):
    data = b'{"job_id": "j", "more": "than one chunk"}'
    servicer = CuttingFileServer({"job.json": data})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    agent_pb2_grpc.add_AgentServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with GatewayConnection(f"127.0.0.1:{port}", TOKEN, call_timeout=5) as conn:
            conn.download_file(info_for("job.json", data), tmp_path / "job.json")
    finally:
        server.stop(grace=None)
    assert (tmp_path / "job.json").read_bytes() == data
    assert servicer.calls == 2
    assert [p.name for p in tmp_path.iterdir()] == ["job.json"]  # no part file left from the cut stream
