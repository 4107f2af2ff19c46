"""The text of a job's status comment and of an incident chain's report issue. Pure functions, no I/O."""

from urllib.parse import quote

from activities.note_text import NOTE_LIMIT, failure_note
from contracts.status import (
    ACCEPTED,
    PR_OPENED,
    IncidentReportInput,
    StatusCommentInput,
    incident_marker,
    status_marker,
)

REPORT_LIMIT = 60_000  # GitHub refuses an issue body over 65,536 characters


def web_ui_link(ui_url: str, namespace: str, workflow_id: str) -> str:
    """The job's page in the Temporal Web UI (the id is one path segment: its slashes are encoded)."""
    return (
        f"{ui_url.rstrip('/')}/namespaces/{quote(namespace, safe='')}/workflows/{quote(workflow_id, safe='')}"
    )


def place_in_line(position: int | None) -> str:
    if position is None or position < 0:
        return "waiting for the repository"
    if position == 0:
        return "the repository is free: starting"
    return f"waiting for the repository: number {position} in line"


def status_text(input: StatusCommentInput, link: str, position: int | None, html_marker: bool) -> str:
    """`html_marker`: the marker ends the text as an HTML comment (GitHub markdown hides it). Jira's wiki
    markup has no hidden text: there the text carries no marker, the comment's property does."""
    headline = f"Agent Conductor · job {input.job_id}"
    lines = [headline, f"Temporal Web UI: {link}", ""]
    phase = input.phase
    if input.note is not None:
        lines.append(failure_note(input.note))
    elif phase == ACCEPTED:
        lines.append("Status: ACCEPTED, the job will start shortly.")
    elif phase == "QUEUED":
        lines.append(f"Status: QUEUED (attempt {input.attempt}), {place_in_line(position)}.")
    elif phase == "RUNNING":
        lines.append(f"Status: RUNNING (attempt {input.attempt}).")
        if input.latest_event:
            lines.append(f"Latest agent event: {input.latest_event}")
    elif phase == PR_OPENED:
        lines.append(f"Status: pull request opened (attempt {input.attempt}): {input.pr_url}")
    else:
        lines.append(f"Status: {phase} (attempt {input.attempt}).")
        if input.pr_url:
            lines.append(f"Pull request: {input.pr_url}")
        if input.reason:
            lines.append(f"Reason: {input.reason}")
    text = "\n".join(lines)[:NOTE_LIMIT]
    if not html_marker:
        return text
    return f"{text}\n\n<!-- {status_marker(input.job_id, input.run_id, input.seq)} -->"


def report_title(input: IncidentReportInput) -> str:
    latest = input.outcomes[-1].state if input.outcomes else "open"
    return f"[agent-conductor] Incident in AWS account {input.account}: {input.alarm_count} alarm(s), job {latest}"[
        :250
    ]


def report_body(input: IncidentReportInput) -> str:
    names = ", ".join(f"`{name}`" for name in input.alarm_names) or "-"
    lines = [
        f"Incident chain `{input.chain_id}` in AWS account {input.account}.",
        "",
        "## Alarms",
        f"- count: {input.alarm_count}",
        f"- first: {input.first_at.isoformat()}",
        f"- last: {input.last_at.isoformat()}",
        f"- alarm names: {names}",
    ]
    for outcome in input.outcomes:
        lines += [
            "",
            f"## Job `{outcome.job_id}`: {outcome.state} (attempt {outcome.attempt})",
        ]
        if outcome.pr_url:
            lines.append(f"Pull request: {outcome.pr_url}")
        if outcome.reason:
            lines.append(f"Reason: {outcome.reason}")
        if outcome.report.strip():
            lines += ["", "Agent's report:", "```", outcome.report.replace("```", "'''"), "```"]
    if input.outcomes and input.outcomes[-1].state != "SUCCEEDED":
        job_id = input.outcomes[-1].job_id
        lines += [
            "",
            "To run the job again: temporal workflow signal --workflow-id "
            f"'{job_id}' --name retry --input '{{\"by\": \"you\"}}'",
        ]
    text = "\n".join(lines)
    if len(text) > REPORT_LIMIT:
        text = text[: REPORT_LIMIT - 20] + "\n… (truncated)"
    return f"{text}\n\n<!-- {incident_marker(input.chain_id)}-->"
