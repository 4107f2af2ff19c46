"""Where people look: a job's one live status comment on its ticket, and an incident chain's report issue.

Both are found again by a marker, never by an id kept only in memory, so a retried activity or a restarted
conductor edits what is there instead of posting a second one. On GitHub the marker is written into the
text as an HTML comment (`status_marker`, `incident_marker`); on Jira, whose wiki markup has no hidden
text, a status comment's marker is a comment property (`status_property`), Jira's own place for an app's
data on a comment, which people do not see.
"""

import re
from datetime import datetime

from pydantic import BaseModel, Field

from contracts.activity_io import FailureNoteInput

# What a job's status comment can say besides its JobState values.
ACCEPTED = "ACCEPTED"
PR_OPENED = "PR_OPENED"
# Alarm names listed in an incident report; the count stays exact beyond it.
REPORT_NAMES_LIMIT = 50
REPORT_TEXT_LIMIT = 8_000

_STATUS_MARKER = re.compile(r"agent-conductor:job=(\S+) run=(\S+) seq=(\d+)")


def status_marker(job_id: str, run_id: str, seq: int) -> str:
    return f"agent-conductor:job={job_id} run={run_id} seq={seq}"


def read_status_marker(text: str, job_id: str) -> tuple[str, int] | None:
    """(run id, seq) of `job_id`'s status marker in `text`, or None when it has none (or another job's)."""
    for found in _STATUS_MARKER.finditer(text or ""):
        if found.group(1) == job_id:
            return found.group(2), int(found.group(3))
    return None


# The Jira comment property holding a status comment's marker: {"job_id", "run_id", "seq"}.
STATUS_PROPERTY_KEY = "agent-conductor.status"


def status_property(job_id: str, run_id: str, seq: int) -> dict:
    """The marker as a Jira comment property (an EntityProperty: `key` and a JSON `value`)."""
    return {"key": STATUS_PROPERTY_KEY, "value": {"job_id": job_id, "run_id": run_id, "seq": seq}}


def read_status_property(properties: object, job_id: str) -> tuple[str, int] | None:
    """(run id, seq) of `job_id`'s marker among a Jira comment's properties, or None when it has none (or
    another job's, or one not of our shape: a property is anyone's to write)."""
    if not isinstance(properties, list):
        return None
    for prop in properties:
        if not isinstance(prop, dict) or prop.get("key") != STATUS_PROPERTY_KEY:
            continue
        value = prop.get("value")
        if not isinstance(value, dict) or value.get("job_id") != job_id:
            return None
        run_id, seq = value.get("run_id"), value.get("seq")
        if isinstance(run_id, str) and isinstance(seq, int) and not isinstance(seq, bool):
            return run_id, seq
        return None
    return None


def incident_marker(chain_id: str) -> str:
    # The chain id ends at the space: `incident/1234/2026-05-12T20:00:00Z` is no prefix of another's.
    return f"agent-conductor:incident={chain_id} "


class StatusCommentInput(BaseModel):
    """One edit of a job's status comment; `seq` orders a run's edits (an older one never overwrites)."""

    job_id: str
    run_id: str
    seq: int = Field(ge=1)
    # The ticket: `jira` + `ENG-123`, or `github` + `owner/repo#7`.
    source: str
    key: str
    summary: str = ""
    # ACCEPTED, a JobState value (QUEUED, RUNNING, AWAITING_APPROVAL, SUCCEEDED, FAILED, ...) or PR_OPENED.
    phase: str
    attempt: int = 1
    # QUEUED: the repository's claim workflow, asked for the job's place in line.
    claim_workflow_id: str = ""
    latest_event: str = Field(default="", max_length=1_000)
    pr_url: str = ""
    reason: str = ""
    # An ending or a budget pause: the note that said so on the ticket before status comments (its
    # text, with the agent's report and the commands that answer it, is the comment's body).
    note: FailureNoteInput | None = None


class StatusCommentResult(BaseModel):
    # e.g. "jira ENG-123 comment 10001", "github acme/app#7 comment 5001"; empty when nothing was posted.
    left_at: str = ""
    # Edited, created, or left as it was (a newer edit was already there).
    action: str = ""


class IncidentOutcome(BaseModel):
    """How one job of the chain ended, as the report shows it."""

    job_id: str
    state: str
    attempt: int = 1
    reason: str = ""
    # The agent's final report (its summary, or the tail of its output when it failed).
    report: str = Field(default="", max_length=REPORT_TEXT_LIMIT)
    pr_url: str = ""


class IncidentReportInput(BaseModel):
    chain_id: str
    account: str
    github_repo: str
    alarm_count: int
    first_at: datetime
    last_at: datetime
    alarm_names: list[str] = Field(default_factory=list, max_length=REPORT_NAMES_LIMIT)
    # The chain's jobs so far, oldest first (a respawned chain has more than one).
    outcomes: list[IncidentOutcome] = Field(default_factory=list)


class IncidentReportResult(BaseModel):
    issue_url: str = ""
    action: str = ""


class IncidentReportState(BaseModel):
    """What the chain workflow keeps per chain to rewrite its report (carried across continue-as-new)."""

    github_repo: str
    outcomes: list[IncidentOutcome] = Field(default_factory=list)
