"""The note a failed or cancelled job leaves on its ticket or pull request. Pure functions, no I/O."""

from contracts.activity_io import FailureNoteInput
from contracts.jobs import JobState

# Jira Cloud rejects comments over 32,767 characters; GitHub comments over 65,536. Stay under both.
NOTE_LIMIT = 30_000
TAIL_LIMIT = 4_000


def note_marker(input: FailureNoteInput) -> str:
    """Names the job attempt and outcome: a retried activity finds its note and does not post twice."""
    return f"agent-conductor:{input.spec.job_id}:attempt-{input.attempt}:{input.state}"


def failure_note(input: FailureNoteInput) -> str:
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
