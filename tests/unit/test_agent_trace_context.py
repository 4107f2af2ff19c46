"""The agent's side of the job's trace: its steps get the trace context as TRACEPARENT, and its result
reports when each step ran (the gateway makes the spans: conductor_worker/gateway/agent_spans.py)."""

import time
from pathlib import Path

import pytest

from agent_runtime.connection import _step_states
from agent_runtime.dag import DagRunner
from agent_runtime.job_task import task_spec
from contracts.steps import StepStatus
from tests.unit.test_builtin_step_commands import INSTRUCTIONS

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def spec_with(tmp_path: Path, traceparent: str, steps_json: str = ""):
    files = {}
    if steps_json:
        (tmp_path / "steps.json").write_text(steps_json)
        files["steps.json"] = tmp_path / "steps.json"
    return task_spec(tmp_path, INSTRUCTIONS, files, "demo", 60.0, traceparent=traceparent)


def test_every_step_gets_the_trace_context(tmp_path: Path):
    spec = spec_with(tmp_path, TRACEPARENT, '[{"name": "test", "run": "true", "env": {"A": "1"}}]')
    assert [step.name for step in spec.steps] == ["clone", "code", "test", "bundle"]
    assert all(step.env["TRACEPARENT"] == TRACEPARENT for step in spec.steps)
    assert spec.steps[2].env["A"] == "1"


@pytest.mark.parametrize("bad", ["", "garbage", TRACEPARENT + "\nEVIL=1", TRACEPARENT.upper()])
def test_a_malformed_trace_context_is_not_passed_on(tmp_path: Path, bad: str):
    assert all("TRACEPARENT" not in step.env for step in spec_with(tmp_path, bad).steps)


async def test_the_result_reports_when_each_step_ran_and_how_it_exited(tmp_path: Path):
    spec = spec_with(tmp_path, TRACEPARENT)
    for step in spec.steps:  # the real steps' environment; each step only checks it
        step.run = f'test "$TRACEPARENT" = {TRACEPARENT} && sleep 0.1'
    spec.steps[1].run = "exit 3"  # `code` fails: `bundle` never runs
    before = time.time()
    task = await DagRunner(spec, tmp_path).run()
    after = time.time()

    statuses = {step.name: step.status.value for step in task.steps}
    states = {state.name: state for state in _step_states(statuses, task.steps)}
    clone, code, bundle = states["clone"], states["code"], states["bundle"]
    assert (clone.status, clone.exit_code) == ("SUCCEEDED", 0)  # it saw TRACEPARENT
    assert before <= clone.started_at < clone.ended_at <= code.started_at <= code.ended_at <= after
    assert clone.ended_at - clone.started_at >= 0.1
    assert (code.status, code.exit_code) == ("FAILED", 3)
    assert bundle.status == StepStatus.SKIPPED.value
    assert (bundle.started_at, bundle.ended_at, bundle.HasField("exit_code")) == (0.0, 0.0, False)


def test_heartbeats_carry_states_only():
    (state,) = _step_states({"clone": "RUNNING"})
    assert (state.started_at, state.HasField("exit_code")) == (0.0, False)
