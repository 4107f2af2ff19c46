"""Every recorded history replays against the current workflow code; a change that breaks one fails here.

Histories come from real runs (`make histories`, tests/histories/record.py). Replay needs no server.
"""

import json
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

with workflow.unsafe.imports_passed_through():
    from conductor_worker.process.worker import WORKFLOWS
    from contracts.jobs import JobResult
    from contracts.tickets import TicketMessage
    from workflows.ticket import TicketWorkflow

HISTORIES = Path(__file__).resolve().parent.parent / "histories"
FILES = sorted(HISTORIES.glob("*/*.json"))


def load(path: Path) -> WorkflowHistory:
    doc = json.loads(path.read_text())
    return WorkflowHistory.from_json(doc["workflowId"], doc)


def workflow_type(history: WorkflowHistory) -> str:
    return history.events[0].workflow_execution_started_event_attributes.workflow_type.name


async def replay(history: WorkflowHistory, workflows: list[type]) -> None:
    """Raises what the replay hit: `workflow.NondeterminismError` when the code no longer fits the history."""
    replayer = Replayer(workflows=workflows, data_converter=pydantic_data_converter)
    await replayer.replay_workflow(history)


@pytest.mark.parametrize("path", FILES, ids=[f"{p.parent.name}/{p.stem}" for p in FILES])
async def test_history_replays_on_current_code(path: Path):
    history = load(path)
    assert workflow_type(history) == path.parent.name  # the directory names the type
    await replay(history, WORKFLOWS)


def test_every_workflow_type_has_a_history():
    """A new workflow type needs a recorded history (a scenario in tests/histories/record.py) too."""
    # The registered name, which is what a history records (it may differ from the class name).
    registered = {workflow._Definition.must_from_class(cls).name for cls in WORKFLOWS}
    recorded = {path.parent.name for path in FILES}
    assert registered <= recorded, f"no history for {sorted(registered - recorded)}: run `make histories`"


# The guard itself: the same change to TicketWorkflow, unguarded and guarded. -----------------------
# Unsandboxed because the sandbox would re-import this test module and rightly refuse its file-system
# reads at import time; the non-determinism check is the SDK core's, with or without the sandbox.

TICKET_SUCCEEDS = HISTORIES / "TicketWorkflow" / "succeeds.json"


@workflow.defn(name="TicketWorkflow", sandboxed=False)
class TicketWorkflowWithUnpatchedStep:
    """A new step (a timer) before the existing ones, deployed without a patch: runs in flight break."""

    @workflow.run
    async def run(self, ticket: TicketMessage) -> JobResult:
        await workflow.sleep(timedelta(seconds=1))
        return await TicketWorkflow().run(ticket)


@workflow.defn(name="TicketWorkflow", sandboxed=False)
class TicketWorkflowWithPatchedStep:
    """The same step behind `workflow.patched`: recorded runs skip it, new runs take it."""

    @workflow.run
    async def run(self, ticket: TicketMessage) -> JobResult:
        if workflow.patched("pause-before-routing"):
            await workflow.sleep(timedelta(seconds=1))
        return await TicketWorkflow().run(ticket)


async def test_an_unpatched_change_is_caught():
    with pytest.raises(workflow.NondeterminismError) as info:
        await replay(load(TICKET_SUCCEEDS), [TicketWorkflowWithUnpatchedStep])
    # The code now starts a timer where the recorded run upserted its search attributes first.
    assert "[TMPRL1100] Nondeterminism error: Timer machine" in str(info.value)
    assert "UpsertWorkflowSearchAttributes" in str(info.value)


async def test_the_same_change_behind_a_patch_replays():
    await replay(load(TICKET_SUCCEEDS), [TicketWorkflowWithPatchedStep])
