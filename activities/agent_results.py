"""Await an agent's result durably: poll the job store, relay liveness as activity heartbeats.

The activity fails (and the workflow decides what that means) when the agent never handshakes,
falls silent for three heartbeat intervals, or exits without reporting.

While it waits, it relays what the agent reports (its steps' states and last log lines), and the model
usage the model gateway counted for the attempt, to the job
workflow's `progress` signal, when that changed and at most every PROGRESS_SECONDS, so `status` shows it
without a signal per heartbeat or log line.

When this conductor drains for a deploy, the watcher does not wait for its agent: it ends at once with
a retryable `ConductorDraining` error, so Temporal retries it on the next conductor's worker, which finds
the agent's progress in the same job store (conductor_worker/drain.py). Each hand-over uses one attempt.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from conductor_worker.job_store import JobAttemptDir
from contracts.activity_io import AwaitAgentInput
from contracts.agent_events import event_from_log_text
from contracts.jobs import AgentProgress, AgentResult
from contracts.logs import LogLine

POLL_SECONDS = 0.5
PROGRESS_SECONDS = 5.0
PROGRESS_LINES = 10
# How far back in the log the latest agent events are looked for, and how many `status` shows.
EVENT_SCAN_LINES = 500
PROGRESS_EVENTS = 10
# An agent that exits may still be finishing its upload on the gateway side.
EXIT_GRACE_SECONDS = 3.0


class AgentProbe(Protocol):
    def is_alive(self, agent_id: str) -> bool: ...


# (workflow id, progress) -> delivered; a failed delivery is logged, never fatal.
ProgressSink = Callable[[str, AgentProgress], Awaitable[None]]
# (job id, n) -> the last n log lines of the job's latest attempt.
LogTail = Callable[[str, int], list[LogLine]]


class AgentResultWatcher:
    def __init__(
        self,
        jobs_dir: Path,
        probe: AgentProbe,
        heartbeat_interval_seconds: float = 5.0,
        handshake_timeout_seconds: float = 120.0,
        progress_sink: ProgressSink | None = None,
        log_tail: LogTail | None = None,
    ) -> None:
        self._jobs_dir = jobs_dir
        self._progress_sink = progress_sink
        self._log_tail = log_tail
        self._probe = probe
        self._silence_limit = 3 * heartbeat_interval_seconds
        self._handshake_timeout = handshake_timeout_seconds

    @activity.defn(name="await_agent_result")
    async def await_agent_result(self, input: AwaitAgentInput) -> AgentResult:
        job = JobAttemptDir(self._jobs_dir, input.job_id, input.attempt)
        started = time.time()
        exited_at: float | None = None
        relayed, relayed_at = AgentProgress(), 0.0
        while True:
            result = job.result()
            if result is not None:
                # The last events and usage, which the periodic relay may not have sent yet.
                await self._relay(input, job, relayed)
                return result
            if activity.is_worker_shutdown():
                raise _draining(input.agent_id)
            beat = job.last_heartbeat()
            activity.heartbeat({"phase": beat[1] if beat else "launching"})
            now = time.time()
            if now - relayed_at >= PROGRESS_SECONDS:
                relayed, relayed_at = await self._relay(input, job, relayed), now
            if beat is None and now - started > self._handshake_timeout:
                raise _crash(
                    "AgentHandshakeTimeout",
                    f"agent {input.agent_id} did not handshake within {self._handshake_timeout:.0f}s",
                )
            # Counted from this attempt's start too: after a hand-over the agent needs a moment to find
            # the new gateway, and silence while no gateway listened is not the agent's fault.
            if beat is not None and now - max(beat[0], started) > self._silence_limit:
                raise _crash(
                    "AgentSilent",
                    f"agent {input.agent_id} sent no heartbeat for "
                    f"{now - beat[0]:.0f}s (limit {self._silence_limit:.0f}s)",
                )
            if not self._probe.is_alive(input.agent_id):
                exited_at = exited_at or now
                if now - exited_at > EXIT_GRACE_SECONDS:
                    raise _crash("AgentCrashed", f"agent {input.agent_id} exited without reporting a result")
            try:
                await asyncio.sleep(POLL_SECONDS)
            except asyncio.CancelledError:
                # The drain's grace period ran out before the next poll: still a hand-over, not a cancel.
                if activity.is_worker_shutdown():
                    raise _draining(input.agent_id) from None
                raise

    async def _relay(
        self, input: AwaitAgentInput, job: JobAttemptDir, relayed: AgentProgress
    ) -> AgentProgress:
        if self._progress_sink is None:
            return relayed
        lines = (
            await asyncio.to_thread(self._log_tail, input.job_id, EVENT_SCAN_LINES) if self._log_tail else []
        )
        events = [event for line in lines if (event := event_from_log_text(line.text))]
        progress = AgentProgress(
            steps=job.step_states(),
            last_lines=[line.render() for line in lines[-PROGRESS_LINES:]],
            model_usage=job.model_usage(),
            events=events[-PROGRESS_EVENTS:],
        )
        if progress == relayed:
            return relayed
        try:
            await self._progress_sink(activity.info().workflow_id, progress)
        except Exception as err:  # progress is a courtesy; the result is what matters
            activity.logger.warning("could not relay progress of %s: %s", input.job_id, err)
            return relayed
        return progress


def _draining(agent_id: str) -> ApplicationError:
    # Benign: an expected hand-over, logged without a traceback for every agent of a deploy.
    return ApplicationError(
        f"conductor draining; agent {agent_id} keeps running and the next conductor watches it",
        type="ConductorDraining",
        category=ApplicationErrorCategory.BENIGN,
    )


def _crash(kind: str, message: str) -> ApplicationError:
    # Non-retryable here: the workflow owns the decision to relaunch with a new attempt and token.
    return ApplicationError(message, type=kind, non_retryable=True)
