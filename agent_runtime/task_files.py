"""Fetch the task files the handshake announced, after checking every path first."""

from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from contracts.task_paths import TaskFilePathError, check_relative_path
from proto.conductor.v1 import agent_pb2


class FileSource(Protocol):
    """What write_task_files needs from a connection (tests pass a fake)."""

    def download_file(self, info: agent_pb2.TaskFileInfo, dest: Path) -> Path: ...


def write_task_files(
    conn: FileSource, infos: Iterable[agent_pb2.TaskFileInfo], dest_dir: Path
) -> dict[str, Path]:
    """Download every file under `dest_dir`; returns handshake path -> local path.

    The whole list is checked before anything is written, so a single bad path (absolute, `..`,
    a duplicate) leaves the disk untouched rather than half-populated.
    """
    infos = list(infos)
    targets: dict[str, Path] = {}
    for info in infos:
        relative = check_relative_path(info.path)
        if info.path in targets:
            raise TaskFilePathError(f"task file listed twice: {info.path!r}")
        targets[info.path] = dest_dir.joinpath(*relative.parts)
    for info in infos:
        target = targets[info.path]
        target.parent.mkdir(parents=True, exist_ok=True)
        conn.download_file(info, target)
    return targets
