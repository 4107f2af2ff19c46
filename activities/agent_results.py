"""Await an agent's result through Temporal: the activity is completed asynchronously by the agent gateway.

The activity does no waiting of its own. It hands its completion to the gateway (`raise_complete_async`),
which, whichever replica the agent talks to, records the agent's handshake and heartbeats as this
activity's heartbeats and completes it with the agent's result, by the job's workflow id and the attempt's
activity id (conductor_worker/gateway/agent_channel.py). Nothing is polled and nothing is held: a conductor that
drains or dies hands nothing over.

Temporal's heartbeat timeout finds an agent that says nothing. Each time it fires, Temporal retries this
activity, which then decides from the last heartbeat it recorded (kept across tries):
- none yet: the agent has not handshaken; past the handshake timeout it is lost (`AgentHandshakeTimeout`),
  before it the activity waits another heartbeat window;
- the agent was heard, but longer ago than SILENCE_WINDOWS heartbeat windows: it is lost (`AgentSilent`).
  One window more than Temporal's own: an agent whose gateway restarted (a deploy, a crashed replica)
  needs a moment to reach the next one, and that silence is not the agent's fault.
The workflow relaunches a lost agent as a new attempt (workflows/agent_job.py).
"""

import time
from datetime import timedelta

from temporalio import activity
from temporalio.exceptions import ApplicationError

from contracts.activity_io import AwaitAgentInput
from contracts.jobs import AgentResult

# How many heartbeat windows a heard agent may stay silent before it is lost.
SILENCE_WINDOWS = 2


class AgentResultWatcher:
    def __init__(self, handshake_timeout_seconds: float = 120.0) -> None:
        self._handshake_timeout = handshake_timeout_seconds

    @activity.defn(name="await_agent_result")
    async def await_agent_result(self, input: AwaitAgentInput) -> AgentResult:
        info = activity.info()
        if info.attempt > 1:
            # Only a heartbeat timeout retries this activity: judge the silence, then wait one more window.
            _check_still_waiting(input, info, self._handshake_timeout)
        activity.raise_complete_async()


def _check_still_waiting(input: AwaitAgentInput, info: activity.Info, handshake_timeout: float) -> None:
    last = info.heartbeat_details[-1] if info.heartbeat_details else None
    if not isinstance(last, dict):
        # Both times are the server's: the first try's scheduling and this one's.
        waited = _seconds(info.current_attempt_scheduled_time - info.scheduled_time)
        if waited >= handshake_timeout:
            raise _crash(
                "AgentHandshakeTimeout",
                f"agent {input.agent_id} did not handshake within {handshake_timeout:.0f}s",
            )
        return
    window = _seconds(info.heartbeat_timeout or timedelta(seconds=15))
    silent_for = time.time() - float(last.get("at", 0))
    if silent_for >= SILENCE_WINDOWS * window:
        raise _crash(
            "AgentSilent",
            f"agent {input.agent_id} sent no heartbeat for {silent_for:.0f}s "
            f"(limit {SILENCE_WINDOWS} x {window:.0f}s)",
        )


def _seconds(delta: timedelta) -> float:
    return delta.total_seconds()


def _crash(kind: str, message: str) -> ApplicationError:
    # Non-retryable here: the workflow owns the decision to relaunch with a new attempt and token.
    return ApplicationError(message, type=kind, non_retryable=True)
