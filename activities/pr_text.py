"""Pull-request title and body, kept within GitHub's limits. Pure functions, no I/O."""

import re
from typing import Protocol


class Titled(Protocol):
    """A ticket or any work item: what a PR needs to name and link its origin."""

    key: str
    summary: str
    url: str


# GitHub rejects longer titles and bodies with 422 "Validation Failed".
TITLE_LIMIT = 256
BODY_LIMIT = 65536
TRUNCATION_MARKER = "\n\n… (truncated by Agent Conductor: {omitted} characters omitted)"
# A GitHub issue's ticket key (contracts/tickets.py): `owner/repo#123`.
_GITHUB_ISSUE = re.compile(r"^(?P<repo>[^/#\s]+/[^/#\s]+)#(?P<number>[0-9]+)$")


def pr_title(ticket: Titled) -> str:
    """`ENG-123: Fix the login page`, on one line, at most TITLE_LIMIT characters."""
    title = " ".join(f"{ticket.key}: {ticket.summary}".split())
    if len(title) <= TITLE_LIMIT:
        return title
    return title[: TITLE_LIMIT - 1] + "…"


def pr_body(ticket: Titled, job_id: str, summary: str, limit: int = BODY_LIMIT, repo: str = "") -> str:
    """Ticket link, the agent's summary and a footer naming the job, at most `limit` characters.

    Only the summary is cut: the link and the footer are what a reviewer needs to trace the PR
    back to its ticket and job, so they always survive. A GitHub issue's PR closes it when merged:
    `Fixes #7` in the issue's own repository `repo`, `Fixes owner/repo#7` from another one.
    """
    link = f"Ticket: [{ticket.key}]({ticket.url})" if ticket.url else f"Ticket: {ticket.key}"
    if issue := _GITHUB_ISSUE.match(ticket.key):
        same_repo = issue["repo"].lower() == repo.lower()
        link += f"\n\nFixes {'#' + issue['number'] if same_repo else ticket.key}"
    head = f"{link}\n\n"
    foot = f"\n\n---\nOpened by Agent Conductor for job {job_id}\n"
    text = summary.strip() or "_The agent gave no summary._"
    room = limit - len(head) - len(foot)
    if len(text) > room:
        # The marker's length depends on the count it reports; size it for the worst case.
        marker_room = len(TRUNCATION_MARKER.format(omitted=len(text)))
        kept = max(room - marker_room, 0)
        text = text[:kept] + TRUNCATION_MARKER.format(omitted=len(text) - kept)
    return head + text + foot
