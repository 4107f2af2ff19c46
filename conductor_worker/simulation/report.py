"""What `conductor simulate` found: one row per agent job, the rejected messages, totals; and its table."""

from datetime import datetime, timedelta
from typing import Literal

from pydantic import AwareDatetime, BaseModel, Field

# Message numbers shown per row in the table before "+N more" (the JSON report lists them all).
SHOWN_NUMBERS = 12


class JobRow(BaseModel):
    job_id: str
    kind: Literal["ticket", "incident"]
    # The ticket key, or the incident chain's id.
    subject: str
    account: str = ""
    # The route's name, else its repository URL; empty when the job never got a route.
    repository: str = ""
    # Simulated time the launcher was called; None when the job ended (or is stuck) before launching.
    started_at: AwareDatetime | None = None
    outcome: Literal["succeeded", "failed", "running", "cancelled", "terminated", "timed_out", "unknown"]
    reason: str = ""
    # Numbers (`#n`) of the messages merged into this job: every message of the ticket's key, or every
    # message placed on the job's chain (ALARMs, OK/INSUFFICIENT_DATA recorded on it, and duplicates).
    messages: list[int] = Field(default_factory=list)
    # Incidents: the chain's ALARM count (exact) and the event ids of its ALARMs.
    alarm_count: int | None = None
    alarm_event_ids: list[str] = Field(default_factory=list)
    # False when the account workflow's bounded decision log lost some placements: then `messages` and
    # `alarm_event_ids` are partial while `alarm_count` stays exact.
    members_complete: bool = True


class RejectedMessage(BaseModel):
    number: int
    reason: str


class Totals(BaseModel):
    messages: int
    rejected: int
    ticket_messages: int
    alarm_messages: int
    ticket_jobs: int
    incident_jobs: int
    chains: int
    launched: int


class SimulationReport(BaseModel):
    scenario: str
    start: AwareDatetime
    # Simulated times: the last message's delivery, and when every workflow was quiet again.
    last_message_at: AwareDatetime
    settled_at: AwareDatetime
    real_seconds: float
    jobs: list[JobRow]
    rejected: list[RejectedMessage]
    totals: Totals
    notes: list[str] = Field(default_factory=list)


def render_table(report: SimulationReport) -> str:
    """Fixed-width text: the jobs table, failure reasons, rejected messages, totals."""
    header = ("JOB", "KIND", "TICKET/CHAIN", "ACCOUNT", "REPOSITORY", "START (simulated)", "ALARMS", "MSGS")
    rows = [
        (
            job.job_id,
            job.kind,
            job.subject,
            job.account or "-",
            job.repository or "-",
            _clock(job.started_at),
            "-" if job.alarm_count is None else str(job.alarm_count),
            str(len(job.messages)) + ("" if job.members_complete else "+"),
        )
        for job in report.jobs
    ]
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = [f"Scenario {report.scenario}: {len(report.jobs)} job(s)", ""]
    for row, job in zip([header, *rows], [None, *report.jobs], strict=True):
        cells = "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        lines.append(f"{cells}  {'MESSAGES' if job is None else _numbers(job)}".rstrip())
    failed = [job for job in report.jobs if job.outcome != "succeeded"]
    if failed:
        lines += ["", "Jobs that did not succeed:"]
        lines += [f"  {job.job_id}: {job.outcome}{': ' + job.reason if job.reason else ''}" for job in failed]
    if report.rejected:
        lines += ["", "Rejected (poison) messages:"]
        lines += [f"  #{r.number}: {r.reason}" for r in report.rejected]
    t = report.totals
    lines += [
        "",
        f"Messages: {t.messages} ({t.ticket_messages} ticket, {t.alarm_messages} alarm, {t.rejected} rejected)",
        f"Jobs: {t.ticket_jobs + t.incident_jobs} ({t.ticket_jobs} ticket, {t.incident_jobs} incident; "
        f"{t.launched} launched); incident chains: {t.chains}",
        f"Simulated {_clock(report.start)} -> last message {_clock(report.last_message_at)}, settled "
        f"{_clock(report.settled_at)} ({_span(report.settled_at - report.start)}) in {report.real_seconds:.1f} s",
    ]
    lines += [f"Note: {note}" for note in report.notes]
    return "\n".join(lines)


def _numbers(job: JobRow) -> str:
    shown = " ".join(f"#{n}" for n in job.messages[:SHOWN_NUMBERS])
    more = len(job.messages) - SHOWN_NUMBERS
    return shown + (f" +{more} more" if more > 0 else "") + ("" if job.members_complete else " (partial)")


def _clock(at: datetime | None) -> str:
    """To a tenth of a second: JSONL messages are 100 ms apart."""
    return "-" if at is None else f"{at:%Y-%m-%d %H:%M:%S}.{at.microsecond // 100_000}"


def _span(delta: timedelta) -> str:
    total = int(delta.total_seconds())
    return f"{total // 3600}h{total % 3600 // 60:02d}m{total % 60:02d}s"
