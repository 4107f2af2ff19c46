"""A failed or cancelled job leaves a note where people look: its Jira ticket and its pull request.

Each note carries a marker naming the job attempt and outcome, and both places are checked for it
before posting, so a retried activity never posts the same note twice.
"""

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import github
import requests
from github.GithubException import GithubException
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.note_text import failure_note, note_marker
from contracts.activity_io import FailureNoteInput, FailureNoteResult

_JIRA_TIMEOUT = 30
# Retrying cannot fix these; the job records the reason and goes on.
_JIRA_FINAL = {
    400: "rejected the comment",
    401: "rejected the credentials",
    403: "refused access",
    404: "does not know the issue (or the account cannot see it)",
}


@dataclass(frozen=True)
class JiraAccess:
    """Jira's REST API v2. With `email`, basic auth (Jira Cloud API token); without, a bearer token (PAT)."""

    base_url: str
    token: str
    email: str = ""

    def session(self) -> requests.Session:
        session = requests.Session()
        if self.email:
            session.auth = (self.email, self.token)
        else:
            session.headers["Authorization"] = f"Bearer {self.token}"
        session.headers["Accept"] = "application/json"
        return session


class FailureNotes:
    def __init__(self, jira: JiraAccess | None, github_factory: Callable[[], github.Github]) -> None:
        self._jira = jira
        self._github_factory = github_factory

    @activity.defn(name="leave_failure_note")
    async def leave_failure_note(self, input: FailureNoteInput) -> FailureNoteResult:
        text, marker = failure_note(input), note_marker(input)
        left: list[str] = []
        ticket = input.spec.ticket
        if ticket is not None and ticket.source == "jira" and self._jira is not None and input.on_ticket:
            left.append(await asyncio.to_thread(self._comment_on_jira, ticket.key, text, marker))
        route = input.spec.route
        if route is not None and route.publisher == "github" and route.github_repo:
            where = await asyncio.to_thread(
                self._comment_on_pr, route.github_repo, input.spec.branch, text, marker
            )
            if where:
                left.append(where)
        if not left:
            activity.logger.info(
                "job %s: no ticket system or pull request to leave a note on", input.spec.job_id
            )
        return FailureNoteResult(left_at=left)

    def _comment_on_jira(self, key: str, text: str, marker: str) -> str:
        url = f"{self._jira.base_url.rstrip('/')}/rest/api/2/issue/{key}/comment"
        with self._jira.session() as session:
            listed = jira_json(
                session.get(url, params={"maxResults": 100, "orderBy": "-created"}, timeout=_JIRA_TIMEOUT),
                key,
            )
            existing = next((c for c in listed.get("comments", []) if marker in c.get("body", "")), None)
            if existing is None:
                existing = jira_json(session.post(url, json={"body": text}, timeout=_JIRA_TIMEOUT), key)
        return f"jira {key} comment {existing.get('id', '?')}"

    def _comment_on_pr(self, repo_name: str, branch: str, text: str, marker: str) -> str:
        gh = self._github_factory()
        try:
            repo = gh.get_repo(repo_name)
            head = f"{repo_name.split('/')[0]}:{branch}"
            pr = next(iter(repo.get_pulls(state="open", head=head)), None)
            if pr is None:
                return ""  # the job failed before it opened one: the ticket note is the report
            issue = repo.get_issue(pr.number)
            comment = next((c for c in issue.get_comments() if marker in (c.body or "")), None)
            if comment is None:
                comment = issue.create_comment(text)
            return f"github {repo_name}#{pr.number} comment {comment.id}"
        except GithubException as e:
            raise ApplicationError(
                f"GitHub comment on {repo_name} failed ({e.status} {e.data})",
                type="GithubError",
                non_retryable=e.status in (401, 403, 404),
            ) from e
        finally:
            gh.close()


def jira_json(response: requests.Response, key: str) -> dict:
    if response.ok:
        return response.json()
    try:
        body = response.json()
        detail = "; ".join(
            body.get("errorMessages", []) + [f"{k}: {v}" for k, v in body.get("errors", {}).items()]
        )
    except ValueError:
        detail = response.text[:200]
    reason = _JIRA_FINAL.get(response.status_code)
    raise ApplicationError(
        f"Jira {reason or 'call failed'} for {key}: HTTP {response.status_code} {detail}".strip(),
        type=f"JiraHttp{response.status_code}",
        non_retryable=reason is not None,
    )
