"""An incident chain's report: one GitHub issue per chain in the routed repository, rewritten in place.

The issue carries the label `INCIDENT_LABEL` and, in its body, a hidden marker naming the chain; each
report lists the repository's issues with that label (newest first, a bounded number), finds the chain's
by the marker and edits it, or opens it. A retried activity, or one run again after its conductor was
killed, therefore edits the one issue. (GitHub's search API would do too, but its index lags: a retry
right after the issue was opened could miss it and open a second one; the issue list does not lag.)
"""

import asyncio
from collections.abc import Callable

import github
from github.GithubException import GithubException
from temporalio import activity

from activities.status_comment import github_error
from activities.status_text import report_body, report_title
from contracts.status import IncidentReportInput, IncidentReportResult, incident_marker

INCIDENT_LABEL = "agent-conductor-incident"
# Labelled issues read to find the chain's (a chain lives at most a day: its issue is among the newest).
_MAX_ISSUES = 300


class IncidentReports:
    def __init__(self, github_factory: Callable[[], github.Github]) -> None:
        self._github_factory = github_factory

    @activity.defn(name="report_incident")
    async def report_incident(self, input: IncidentReportInput) -> IncidentReportResult:
        return await asyncio.to_thread(self._open_or_edit, input)

    def _open_or_edit(self, input: IncidentReportInput) -> IncidentReportResult:
        title, body, marker = report_title(input), report_body(input), incident_marker(input.chain_id)
        gh = self._github_factory()
        try:
            repo = gh.get_repo(input.github_repo)
            listed = repo.get_issues(state="all", labels=[INCIDENT_LABEL], sort="created", direction="desc")
            existing = None
            for index, issue in enumerate(listed):
                if index >= _MAX_ISSUES:
                    break
                if marker in (issue.body or ""):
                    existing = issue
                    break
            if existing is None:
                issue = repo.create_issue(title=title, body=body, labels=[INCIDENT_LABEL])
                activity.logger.info("incident %s: opened %s", input.chain_id, issue.html_url)
                return IncidentReportResult(issue_url=issue.html_url, action="created")
            if existing.title == title and existing.body == body:
                return IncidentReportResult(issue_url=existing.html_url, action="kept")
            existing.edit(title=title, body=body)
            return IncidentReportResult(issue_url=existing.html_url, action="edited")
        except GithubException as e:
            raise github_error(e, f"incident report in {input.github_repo}") from e
        finally:
            gh.close()
