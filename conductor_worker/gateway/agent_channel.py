"""The agent channel through Temporal: what an agent tells the gateway becomes calls on its job.

A job attempt's await activity (activities/agent_results.py) is completed asynchronously. The gateway that
hears the agent, on whichever replica, heartbeats it (details: `{"phase", "steps", "at"}`, the step states
as name -> StepStatus value) and completes it with the agent's result, by the job's workflow id (the job
id) and the attempt's activity id (contracts.activity_io.agent_watch_activity_id). So:
- a silent agent is found by Temporal's heartbeat timeout on that activity;
- a cancelled job's agent learns it from its next heartbeat's reply (Temporal reports the cancel request);
- an ended attempt's agent (superseded, cancelled, over budget, finished) is refused: Temporal no longer
  has its activity, and the job's `agent_channel` query says the attempt is over.

When Temporal does not know the activity, the job's `agent_channel` query tells an ended attempt from one
not awaited yet (the agent was quicker than the workflow) or between two tries of the activity (after a
heartbeat timeout): a heartbeat then simply counts for nothing, a result waits for the activity a while.
A job run from before the channel awaits its agent under an id Temporal assigned; it is found once by
describing the job, and kept.

Those heartbeat details are the only record of the agent's handshake and beats: no file is written for them
(a beat that carries no step states repeats the last ones this gateway heard from the attempt).

The gateway also relays the agent's progress (step states, last log lines and events, model usage) to the
job's `progress` signal for `status`, when it changed and at most every PROGRESS_SECONDS per attempt.
"""

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from temporalio.client import (
    AsyncActivityCancelledError,
    AsyncActivityHandle,
    Client,
    WorkflowQueryFailedError,
)
from temporalio.service import RPCError, RPCStatusCode

from contracts.activity_io import AGENT_WATCH_ID_PREFIX, AgentChannelState, agent_watch_activity_id
from contracts.agent_events import event_from_log_text
from contracts.jobs import AgentProgress, AgentResult
from contracts.logs import LogLine
from contracts.usage import ModelUsage
from stores.job_store import JobAttemptDir

log = logging.getLogger(__name__)

AWAIT_ACTIVITY_TYPE = "await_agent_result"
PROGRESS_SECONDS = 5.0
PROGRESS_LINES = 10
# How far back in the log the latest agent events are looked for, and how many `status` shows.
EVENT_SCAN_LINES = 500
PROGRESS_EVENTS = 10
# Attempts whose relay state is kept; past it the least recently heard are forgotten (their progress is
# then relayed again at their next beat, nothing is lost).
MAX_TRACKED_ATTEMPTS = 10_000
# A result that arrives while its await activity is not running (not awaited yet, between two tries) waits
# this long for it; then the agent is told to try again (UNAVAILABLE).
REPORT_PATIENCE_SECONDS = 30.0
REPORT_RETRY_SECONDS = 0.5
RPC_TIMEOUT = timedelta(seconds=10)
# What an agent's heartbeat puts in Temporal (its activity's heartbeat details, and `status`) is bounded:
# a hostile agent must not fill the job's history or push a heartbeat past Temporal's payload limit.
MAX_STEPS = 200
MAX_NAME_CHARS = 100

# (job id, n) -> the last n log lines of the job's latest attempt.
LogTail = Callable[[str, int], list[LogLine]]
# (job id, attempt) -> the attempt's model usage so far (stores/usage_store.py), None: no model request.
UsageOf = Callable[[str, int], ModelUsage | None]


class AttemptEnded(Exception):
    """The job no longer expects this attempt's agent: its reports are refused, it is told to stop."""


class _NotAwaited(Exception):
    """Temporal has no running await activity for the attempt right now, and the attempt is not over."""


@dataclass
class _Attempt:
    relayed: AgentProgress | None = None
    # The step states the agent last reported here (a beat without them keeps these).
    steps: dict[str, str] = field(default_factory=dict)
    relayed_at: float = 0.0
    # A run from before the channel: the await activity's assigned id, once found.
    activity_id: str = ""


class AgentChannel:
    def __init__(self, client: Client, log_tail: LogTail | None = None, usage: UsageOf | None = None) -> None:
        self._client = client
        self._log_tail = log_tail
        self._usage = usage
        self._attempts: OrderedDict[tuple[str, int], _Attempt] = OrderedDict()

    async def beat(self, job: JobAttemptDir, phase: str, steps: dict[str, str] | None = None) -> bool:
        """Record the agent's heartbeat on its await activity; True when the job asks the agent to stop.

        `steps` replaces the attempt's step states; None (or empty) keeps the last ones reported here."""
        steps = self._remember_steps(job, steps)
        details = {"phase": phase[:MAX_NAME_CHARS], "steps": _bounded(steps), "at": time.time()}
        try:
            await self._on_activity(job, lambda handle: handle.heartbeat(details))
        except AsyncActivityCancelledError as err:
            if err.details is None or not err.details.cancel_requested:
                return False  # paused or reset by an operator: the agent keeps working
            await self._acknowledge_cancel(job)
            return True
        except AttemptEnded:
            self._attempts.pop((job.job_id, job.attempt), None)
            return True
        except _NotAwaited:
            return False
        await self._relay(job, steps, PROGRESS_SECONDS)
        return False

    async def report(
        self, job: JobAttemptDir, result: AgentResult, steps: dict[str, str] | None = None
    ) -> None:
        """Complete the attempt's await activity with the result; AttemptEnded when the job refuses it,
        TimeoutError when its await activity did not come within REPORT_PATIENCE_SECONDS.

        `steps`: the final step states the result came with (None: the last ones reported here)."""
        steps = self._remember_steps(job, steps)
        await self._relay(job, steps, 0.0)  # the last events and usage, before the result
        deadline = time.monotonic() + REPORT_PATIENCE_SECONDS
        while True:
            try:
                await self._on_activity(job, lambda handle: handle.complete(result))
                break
            except _NotAwaited:
                if time.monotonic() >= deadline:
                    raise TimeoutError(
                        f"{job.job_id} attempt {job.attempt}: its await activity did not come within "
                        f"{REPORT_PATIENCE_SECONDS:.0f}s"
                    ) from None
                await asyncio.sleep(REPORT_RETRY_SECONDS)
        self._attempts.pop((job.job_id, job.attempt), None)

    # -- finding the await activity ----------------------------------------------------------------------

    async def _on_activity(
        self, job: JobAttemptDir, call: Callable[[AsyncActivityHandle], Awaitable[Any]]
    ) -> None:
        tracked = self._attempts.get((job.job_id, job.attempt))
        activity_id = (
            tracked.activity_id if tracked and tracked.activity_id else agent_watch_activity_id(job.attempt)
        )
        try:
            await call(self._handle(job, activity_id))
            return
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
        state = await self._channel_state(job)
        if state.activity_id:
            raise _NotAwaited()  # not scheduled yet, or between two tries
        assigned = await self._assigned_await_id(job)
        if not assigned or assigned == activity_id:
            raise _NotAwaited()
        self._track(job).activity_id = assigned
        try:
            await call(self._handle(job, assigned))
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            raise _NotAwaited() from None

    def _handle(self, job: JobAttemptDir, activity_id: str) -> AsyncActivityHandle:
        return self._client.get_async_activity_handle(
            workflow_id=job.job_id, run_id=None, activity_id=activity_id
        )

    async def _channel_state(self, job: JobAttemptDir) -> AgentChannelState:
        """The job's own word on the attempt; AttemptEnded when it no longer expects the agent."""
        handle = self._client.get_workflow_handle(job.job_id)
        try:
            state = await handle.query(
                "agent_channel", result_type=AgentChannelState, rpc_timeout=RPC_TIMEOUT
            )
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                raise AttemptEnded(f"{job.job_id}: no such job") from None
            raise
        except WorkflowQueryFailedError as err:
            # A worker from before the channel answers for the job (a deploy under way): ask again later.
            log.info("%s: agent_channel query failed (%s); the agent's report waits", job.job_id, err)
            raise _NotAwaited() from None
        if state.attempt != job.attempt or not state.open:
            raise AttemptEnded(
                f"{job.job_id} attempt {job.attempt} has ended (the job is on attempt {state.attempt})"
            )
        return state

    async def _assigned_await_id(self, job: JobAttemptDir) -> str:
        """A run from before the channel: its pending await activity's assigned id, if it has one."""
        described = await self._client.get_workflow_handle(job.job_id).describe(rpc_timeout=RPC_TIMEOUT)
        for pending in described.raw_description.pending_activities:
            ours = pending.activity_id.startswith(AGENT_WATCH_ID_PREFIX)
            if pending.activity_type.name == AWAIT_ACTIVITY_TYPE and not ours:
                return pending.activity_id
        return ""

    async def _acknowledge_cancel(self, job: JobAttemptDir) -> None:
        """The workflow asked the activity to stop: close it, so it is not left to time out."""
        tracked = self._attempts.pop((job.job_id, job.attempt), None)
        activity_id = (
            tracked.activity_id if tracked and tracked.activity_id else agent_watch_activity_id(job.attempt)
        )
        try:
            await self._handle(job, activity_id).report_cancellation()
        except RPCError as err:  # already closed: nothing left to acknowledge
            log.debug("%s attempt %d: cancellation not reported: %s", job.job_id, job.attempt, err)

    def _remember_steps(self, job: JobAttemptDir, steps: dict[str, str] | None) -> dict[str, str]:
        tracked = self._track(job)
        if steps:
            tracked.steps = _bounded(steps)
        return tracked.steps

    def _track(self, job: JobAttemptDir) -> _Attempt:
        key = (job.job_id, job.attempt)
        tracked = self._attempts.pop(key, None) or _Attempt()
        self._attempts[key] = tracked
        while len(self._attempts) > MAX_TRACKED_ATTEMPTS:
            self._attempts.popitem(last=False)
        return tracked

    # -- progress for `status` -----------------------------------------------------------------------------

    async def _relay(self, job: JobAttemptDir, steps: dict[str, str], every: float) -> None:
        tracked = self._track(job)
        now = time.monotonic()
        if tracked.relayed is not None and now - tracked.relayed_at < every:
            return
        lines = (
            await asyncio.to_thread(self._log_tail, job.job_id, EVENT_SCAN_LINES) if self._log_tail else []
        )
        events = [event for line in lines if (event := event_from_log_text(line.text))]
        usage = await self._usage_so_far(job)
        progress = AgentProgress(
            steps=_bounded(steps),
            last_lines=[line.render() for line in lines[-PROGRESS_LINES:]],
            model_usage=usage,
            events=events[-PROGRESS_EVENTS:],
        )
        tracked.relayed_at = now
        if progress == tracked.relayed:
            return
        try:
            await self._client.get_workflow_handle(job.job_id).signal(
                "progress", progress, rpc_timeout=RPC_TIMEOUT
            )
        except RPCError as err:  # progress is a courtesy; the result is what matters
            log.warning("could not relay progress of %s: %s", job.job_id, err)
            return
        tracked.relayed = progress

    async def _usage_so_far(self, job: JobAttemptDir) -> ModelUsage | None:
        if self._usage is None:
            return None
        try:
            return await asyncio.to_thread(self._usage, job.job_id, job.attempt)
        except Exception as err:  # the blob store (S3): progress is a courtesy, the beat goes on
            log.warning("could not read the model usage of %s attempt %d: %s", job.job_id, job.attempt, err)
            return None


def _bounded(steps: dict[str, str]) -> dict[str, str]:
    """At most MAX_STEPS steps, names and states cut to MAX_NAME_CHARS."""
    return {name[:MAX_NAME_CHARS]: state[:MAX_NAME_CHARS] for name, state in list(steps.items())[:MAX_STEPS]}
