"""The note a failed or cancelled job leaves on its ticket or pull request, and the one a job paused for
its token budget leaves (what to run to answer it). Pure functions, no I/O."""

from contracts.activity_io import FailureNoteInput
from contracts.jobs import JobState

# Jira Cloud rejects comments over 32,767 characters; GitHub comments over 65,536. Stay under both.
NOTE_LIMIT = 30_000
TAIL_LIMIT = 4_000


def note_marker(input: FailureNoteInput) -> str:
    """Names the job attempt and outcome: a retried activity finds its note and does not post twice."""
    marker = f"agent-conductor:{input.spec.job_id}:attempt-{input.attempt}:{input.state}"
    # An attempt may pause more than once (each approval raises its allowance): one note per pause.
    return f"{marker}:{input.used_tokens}" if input.state == JobState.AWAITING_APPROVAL else marker


def failure_note(input: FailureNoteInput) -> str:
    if input.state == JobState.AWAITING_APPROVAL:
        return budget_pause_note(input)
    spec, result = input.spec, input.result
    if input.state == JobState.CANCELLED:
        headline = f"Agent Conductor: job {spec.job_id} was cancelled by {input.by or 'an operator'}."
    else:
        headline = f"Agent Conductor: job {spec.job_id} ended {input.state} (attempt {input.attempt})."
    lines = [headline, "", f"Reason: {input.reason or 'none given'}"]
    if result is not None:
        lines += [
            f"Agent: {result.status}, exit code {result.exit_code}, failure class {result.failure_class}.",
            f"Summary: {result.summary or '-'}",
        ]
        for name, tail in (("stderr", result.stderr_tail), ("stdout", result.stdout_tail)):
            if tail.strip():
                lines += ["", f"Last {name}:", "```", tail[-TAIL_LIMIT:], "```"]
    lines += [
        "",
        "To run it again: temporal workflow signal --workflow-id "
        f"'{spec.job_id}' --name retry --input '{{\"by\": \"you\"}}'",
        "",
        f"[{note_marker(input)}]",
    ]
    text = "\n".join(lines)
    return text if len(text) <= NOTE_LIMIT else text[: NOTE_LIMIT - 20] + "\n… (truncated)"


def budget_pause_note(input: FailureNoteInput) -> str:
    """The job waits for an operator: why, and the two lines that answer it (README "Operating jobs")."""
    job_id = input.spec.job_id
    update = f"temporal workflow update execute --workflow-id '{job_id}'"
    lines = [
        f"Agent Conductor: job {job_id} is AWAITING_APPROVAL (attempt {input.attempt}): "
        f"its model budget is spent ({input.used_tokens} tokens used).",
        "",
        f"Reason: {input.reason or 'token budget spent'}",
        "The agent's next model request is held until an operator answers within "
        f"{input.spec.policy.approval_window_seconds}s; without an answer the job ends FAILED `budget`.",
        "",
        "To let it go on with more tokens (`raise_cost_usd` for a cost budget):",
        f'{update} --name approve_budget --input \'{{"raise_tokens": 100000, "by": "you"}}\'',
        "To end it:",
        f'{update} --name refuse_budget --input \'{{"by": "you", "reason": "too expensive"}}\'',
        "",
        f"[{note_marker(input)}]",
    ]
    return "\n".join(lines)
