"""Run one DAG step as a shell in its own process group: stream its output, time it out, stop it cleanly.

A step is over when its shell exits; anything it left running in its group is stopped then too
(SIGTERM, SIGKILL after the grace period), so no step outlives its result.
"""

import asyncio
import codecs
import os
import signal
import time
from collections.abc import Callable
from enum import Enum
from pathlib import Path

from contracts.jobs import FailureClass
from contracts.steps import StepResult, StepSpec, StepStatus

# on_line(step name, "stdout" | "stderr", line without its newline)
LineCallback = Callable[[str, str, str], None]

TAIL_CHARS = 4000
READ_CHUNK = 64 * 1024
# A longer line reaches on_line in pieces of this size, so one endless line can't fill our memory.
MAX_LINE_CHARS = 64 * 1024


class _Ending(Enum):
    EXITED = "exited"
    TIMED_OUT = "timed out"
    CANCELLED = "cancelled"


class _Output:
    """One output stream of a step: whole lines go to on_line, only the last TAIL_CHARS are kept."""

    def __init__(self, step: str, stream: str, on_line: LineCallback | None) -> None:
        self._step, self._stream, self._on_line = step, stream, on_line
        # Incremental, so a UTF-8 character split across two reads is decoded whole.
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial = ""
        self.tail = ""
        # A failing on_line is reported after the step ends; until then the pipe keeps draining,
        # so the step can't block on a full pipe.
        self.error: Exception | None = None

    def feed(self, data: bytes, final: bool = False) -> None:
        text = self._decoder.decode(data, final)
        self.tail = (self.tail + text)[-TAIL_CHARS:]
        if self._on_line is None:
            return
        whole = (self._partial + text).split("\n")
        self._partial = whole.pop()
        lines = [piece for line in whole for piece in _pieces(line)]
        while len(self._partial) > MAX_LINE_CHARS:
            lines.append(self._partial[:MAX_LINE_CHARS])
            self._partial = self._partial[MAX_LINE_CHARS:]
        if final and self._partial:
            lines.append(self._partial)
            self._partial = ""
        try:
            for line in lines:
                self._on_line(self._step, self._stream, line)
        except Exception as err:
            self.error, self._on_line = err, None

    async def pump(self, reader: asyncio.StreamReader) -> None:
        while chunk := await reader.read(READ_CHUNK):
            self.feed(chunk)
        self.feed(b"", final=True)


def _pieces(line: str) -> list[str]:
    return [line[i : i + MAX_LINE_CHARS] for i in range(0, len(line), MAX_LINE_CHARS)] or [""]


async def run_step(
    step: StepSpec,
    workdir: Path,
    *,
    kill_grace_seconds: float,
    cancelled: asyncio.Event,
    on_line: LineCallback | None = None,
) -> StepResult:
    """Run `step` to its end: exit, timeout (TIMED_OUT) or `cancelled` being set (CANCELLED)."""
    started, started_at = time.monotonic(), time.time()
    outputs = {name: _Output(step.name, name, on_line) for name in ("stdout", "stderr")}
    pipes: dict[str, tuple[int, asyncio.StreamReader, asyncio.ReadTransport]] = {}
    try:
        for name in outputs:
            pipes[name] = await _open_pipe()
        proc = await _spawn(step, workdir, stdout=pipes["stdout"][0], stderr=pipes["stderr"][0])
    except BaseException as err:
        for _, _, transport in pipes.values():
            transport.close()
        # OSError: no /bin/sh, no workdir, too many open files; ValueError: a NUL byte in env.
        if not isinstance(err, OSError | ValueError):
            raise
        return StepResult(
            name=step.name,
            status=StepStatus.FAILED,
            stderr_tail=f"could not start step {step.name!r}: {err}",
            duration_seconds=time.monotonic() - started,
            started_at=started_at,
            failure_class=FailureClass.INFRASTRUCTURE,
        )
    finally:
        # The child has its own copies; ours would keep the pipes open and hide end of file.
        for write_fd, _, _ in pipes.values():
            os.close(write_fd)

    readers = {asyncio.create_task(outputs[name].pump(reader)) for name, (_, reader, _) in pipes.items()}
    exited = asyncio.create_task(proc.wait())
    try:
        ending = await _first_ending(exited, cancelled, step.timeout_seconds)
        # The shell is done or must stop; either way its group goes with it.
        await _stop_group(proc.pid, {exited, *readers}, kill_grace_seconds)
        await exited
        # What the pipes still buffer drains at once; only a process that left the group (setsid)
        # can keep them open now, and we stop reading it.
        await asyncio.wait(readers, timeout=max(kill_grace_seconds, 1.0))
        for task in readers:
            if task.done():
                task.result()
        for output in outputs.values():
            if output.error is not None:
                raise output.error
    finally:
        if proc.returncode is None:
            # run() itself was cancelled: no time for a grace period.
            _signal_group(proc.pid, signal.SIGKILL)
        for task in (exited, *readers):
            task.cancel()
        for _, _, transport in pipes.values():
            transport.close()
    result = _result(step, ending, proc.returncode, outputs, time.monotonic() - started)
    result.started_at = started_at
    return result


async def _open_pipe() -> tuple[int, asyncio.StreamReader, asyncio.ReadTransport]:
    """A pipe we read asynchronously; its write end goes to the child.

    Our own pipes instead of PIPE: asyncio's `wait()` would also wait for every holder of the
    pipe to close it, so a background child could keep a finished step "running".
    """
    read_fd, write_fd = os.pipe()
    reader = asyncio.StreamReader(limit=READ_CHUNK)
    try:
        transport, _ = await asyncio.get_running_loop().connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", buffering=0)
        )
    except BaseException:
        os.close(write_fd)
        raise
    return write_fd, reader, transport


async def _spawn(step: StepSpec, workdir: Path, *, stdout: int, stderr: int) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        "/bin/sh",
        "-c",
        step.run,
        # An inherited stdin could block a step forever on a read nobody answers.
        stdin=asyncio.subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        cwd=workdir,
        # Inherited as is unless the step adds to it: copying and encoding the whole environment
        # for every step is a tenth of what spawning it costs.
        env={**os.environ, **step.env} if step.env else None,
        # Its own session and process group: a timeout or cancel can reach every child it starts.
        start_new_session=True,
    )


async def _first_ending(
    exited: asyncio.Task[int], cancelled: asyncio.Event, timeout: float | None
) -> _Ending:
    cancel_wait = asyncio.create_task(cancelled.wait())
    try:
        done, _ = await asyncio.wait(
            {exited, cancel_wait}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        cancel_wait.cancel()
    # A step that finished on its own reports how it finished, even if a cancel arrived with it.
    if exited in done:
        return _Ending.EXITED
    return _Ending.CANCELLED if cancel_wait in done else _Ending.TIMED_OUT


async def _stop_group(pgid: int, waits: set[asyncio.Task], grace: float) -> None:
    """SIGTERM the group; SIGKILL it unless the shell exited and the pipes closed within `grace`."""
    _signal_group(pgid, signal.SIGTERM)
    if grace > 0:
        await asyncio.wait(waits, timeout=grace)
    # Even when all is quiet: a straggler that ignores SIGTERM and closed its pipes is still there.
    _signal_group(pgid, signal.SIGKILL)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    # The group id is the shell's pid. Once the shell is reaped, Linux keeps that pid unused while
    # any member of the group lives, and hands out pids cyclically after that, so this reaches no
    # stranger's group.
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _result(
    step: StepSpec, ending: _Ending, exit_code: int | None, outputs: dict[str, _Output], duration: float
) -> StepResult:
    if ending is _Ending.TIMED_OUT:
        status, failure = StepStatus.TIMED_OUT, FailureClass.SCRIPT
    elif ending is _Ending.CANCELLED:
        status, failure = StepStatus.CANCELLED, FailureClass.NONE
    elif exit_code == 0:
        status, failure = StepStatus.SUCCEEDED, FailureClass.NONE
    else:
        status, failure = StepStatus.FAILED, FailureClass.SCRIPT
    return StepResult(
        name=step.name,
        status=status,
        exit_code=exit_code,
        stdout_tail=outputs["stdout"].tail,
        stderr_tail=outputs["stderr"].tail,
        duration_seconds=duration,
        failure_class=failure,
    )
