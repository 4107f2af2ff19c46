"""What an agent's heartbeat may put into Temporal is bounded (conductor_worker/gateway/agent_channel.py)."""

import json

from conductor_worker.gateway.agent_channel import MAX_NAME_CHARS, MAX_STEPS, _bounded


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
