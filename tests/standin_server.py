"""TEST DOUBLE plumbing: serve a stand-in's FastAPI app on a free 127.0.0.1 port from a thread; hold a reply."""

import asyncio
import socket
import threading
import time

import uvicorn
from fastapi import FastAPI


class ThreadedServer:
    """`with ThreadedServer(app) as server: server.base_url`; stops and frees the port on exit."""

    def __init__(self, app: FastAPI, name: str = "stand-in") -> None:
        self.app = app
        self.name = name
        self.base_url = ""
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    def start(self) -> "ThreadedServer":
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # As real servers answer: no Nagle delay between a response's headers and its (SSE) body chunks.
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        self._server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", lifespan="off"))
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"{self.name} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server and self._thread:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        if self._socket:
            self._socket.close()


class HeldReply:
    """One reply a stand-in withholds: the request is served (the service has what it asked) but its
    caller waits until `release()`, so a test can kill the caller in between, as a conductor dying
    mid-call would be."""

    def __init__(self) -> None:
        self._armed = False
        self.holding = threading.Event()  # set once a reply is being held
        self._released = threading.Event()

    def arm(self) -> None:
        """Hold the next reply that `take()` is asked about."""
        self._armed = True

    def take(self) -> bool:
        """True (once) if this request's reply is the one to hold; call it under the stand-in's lock."""
        armed, self._armed = self._armed, False
        return armed

    async def hold(self) -> None:
        self.holding.set()
        while not self._released.is_set():
            await asyncio.sleep(0.05)

    def release(self) -> None:
        self._released.set()
