"""Safe shutdown for deploys: the flag file that asks for a drain, and the ready file that reports it.

A deploy writes `true` to the replica's IS_CONDUCTOR_SHUTTING_DOWN (or sends SIGTERM). The conductor then
stops SQS intake, so new messages wait in the queue; drains its Temporal workers; stops its agent gateway;
and writes the replica's CONDUCTOR_READY_FOR_SAFE_SHUTDOWN, after which the process exits 0 and the new
version may start. Both files are the replica's own (<state dir>/replicas/<replica>/ by default), so on a
shared state dir one flag does not drain every replica and a start does not clear another's ready file.

Nothing is handed over explicitly. Agents run in their own sessions and outlive the conductor; when the
gateway stops, their gRPC channels drop and reconnect by themselves to whichever conductor next listens
at the same address (uploads and handshakes use wait_for_ready). Their await activities hold nothing on
this conductor: the gateway that next hears an agent heartbeats and completes its activity through
Temporal (conductor_worker/gateway/agent_channel.py), and a gateway silent for longer than a heartbeat window only
costs a retry of the activity, which waits one window more before it calls the agent lost
(activities/agent_results.py). The pool agents' REST API stops last (requests in flight finish first);
pool agents move on to their next conductor URL, and their tasks' state is in Temporal, so nothing is
handed over for them either.

The flag is level-triggered: a conductor started while it still says true drains at once, so a deploy
sets it back to false (or removes it) before starting the new version.
"""

import asyncio
import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from stores.job_store import write_atomic

log = logging.getLogger(__name__)

FLAG_POLL_SECONDS = 1.0
_SHUTTING_DOWN = {"true", "1", "yes"}


class AgentProbe(Protocol):
    def is_alive(self, agent_id: str) -> bool: ...


def flag_says_shutting_down(path: Path) -> bool:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return False
    except OSError as err:  # unreadable is not "true": a drain must be asked for, never guessed
        log.warning("cannot read shutdown flag %s: %s", path, err)
        return False
    return text.strip().lower() in _SHUTTING_DOWN


async def watch_flag(path: Path, stop: asyncio.Event, interval: float = FLAG_POLL_SECONDS) -> bool:
    """Set `stop` once the flag file says true; True if the flag (not something else) stopped us."""
    if flag_says_shutting_down(path):
        log.warning("%s already says true at start: draining at once", path)
    while not stop.is_set():
        if flag_says_shutting_down(path):
            log.info("%s says true: draining", path)
            stop.set()
            return True
        try:
            await asyncio.wait_for(stop.wait(), interval)
        except TimeoutError:
            pass
    return False


def clear_ready_file(path: Path) -> None:
    """A ready file left by the previous process would tell the next deploy we drained before we have."""
    path.unlink(missing_ok=True)


def running_agents(jobs_dir: Path, probe: AgentProbe, host_task_queue: str) -> int:
    """This replica's agents still working without a reported result: the jobs the next conductor resumes."""
    count = 0
    for record in jobs_dir.glob("*/attempt-*/agent.json"):
        if (record.parent / "result.json").exists():
            continue
        try:
            recorded = json.loads(record.read_text())
            agent_id = recorded["agent_id"]
        except (OSError, ValueError, KeyError):
            continue
        if recorded.get("host_task_queue", host_task_queue) != host_task_queue:
            continue  # another replica's (a shared state dir): its pid means nothing on this host
        count += probe.is_alive(agent_id)
    return count


class DrainLog:
    """Times the drain's stages, one log line each; its report is the ready file's body."""

    def __init__(self, trigger: str) -> None:
        self.trigger = trigger
        self._started = time.monotonic()
        self._stages: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str, done_message: str) -> Iterator[None]:
        began = time.monotonic()
        yield
        self._stages[name] = round(time.monotonic() - began, 3)
        log.info("drain: %s (%.1f s)", done_message, self._stages[name])

    def report(self, **extra: object) -> dict:
        return {
            "ready_at": datetime.now(UTC).isoformat(),
            "pid": os.getpid(),
            "trigger": self.trigger,
            "drain_seconds": round(time.monotonic() - self._started, 3),
            "stage_seconds": self._stages,
            **extra,
        }


def write_ready_file(path: Path, report: dict) -> None:
    # Atomic: the deploy script may read it the moment it appears.
    write_atomic(path, (json.dumps(report, indent=2) + "\n").encode())
