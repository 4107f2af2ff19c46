"""What an agent's heartbeat may put into Temporal is bounded, and a beat without step states keeps the
last ones (conductor_worker/gateway/agent_channel.py)."""

import json
from pathlib import Path

from conductor_worker.gateway.agent_channel import MAX_NAME_CHARS, MAX_STEPS, AgentChannel, _bounded
from stores.job_store import JobAttemptDir


def test_a_hostile_agents_step_states_are_cut_to_the_bounds():
    flood = {f"step-{i}-" + "x" * 10_000: "RUNNING" + "y" * 10_000 for i in range(10_000)}
    assert len(json.dumps(flood)) > 100_000_000  # unbounded, far past Temporal's payload limits

    kept = _bounded(flood)

    assert len(kept) == MAX_STEPS
    assert all(len(name) <= MAX_NAME_CHARS and len(state) <= MAX_NAME_CHARS for name, state in kept.items())
    assert len(json.dumps(kept)) < 50_000


def test_a_real_dag_s_states_pass_unchanged():
    steps = {"clone": "SUCCEEDED", "code": "RUNNING", "lint": "PENDING", "bundle": "PENDING"}
    assert _bounded(steps) == steps


def test_a_beat_without_step_states_keeps_the_last_ones_reported():
    channel = AgentChannel(client=None)  # steps are remembered before any call to Temporal
    job = JobAttemptDir(Path("/nonexistent"), "job/ticket/jira/ENG-1", 1)

    assert channel._remember_steps(job, None) == {}
    assert channel._remember_steps(job, {"clone": "SUCCEEDED", "code": "RUNNING"}) == {
        "clone": "SUCCEEDED",
        "code": "RUNNING",
    }
    assert channel._remember_steps(job, {}) == {"clone": "SUCCEEDED", "code": "RUNNING"}
    assert (
        channel._remember_steps(JobAttemptDir(Path("/nonexistent"), "job/ticket/jira/ENG-1", 2), None) == {}
    )
