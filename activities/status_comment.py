"""A job's one live status comment on its ticket: a Jira comment or a GitHub issue comment, edited in place.

The comment carries a marker naming the job, its workflow run and the edit's sequence number
(contracts/status.py): on GitHub an HTML comment in its text, on Jira a comment property (hidden, set in
the same call as the body; a comment an older conductor marked in its text is still found, and moves to
the property on its next edit). Each edit lists the ticket's comments, finds it by that marker and edits
it, or posts it when there is none. So a retried activity, or one that runs again after its conductor was
killed, edits the one comment; and an edit older than the one shown (same run, lower seq) changes nothing.
"""

import asyncio
from collections.abc import Callable
from datetime import timedelta

import github
import requests
from github.GithubException import GithubException, RateLimitExceededException
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from activities.failure_notes import JiraAccess, jira_json
from activities.status_text import status_text, web_ui_link
from contracts.status import (
    StatusCommentInput,
    StatusCommentResult,
    read_status_marker,
    read_status_property,
    status_property,
)

_JIRA_TIMEOUT = 30
# Comments read to find the marker: Jira's pages of 100, GitHub's of 30 (PyGithub's default). A ticket
# with more comments than this gets a second status comment, not an endless scan.
_MAX_COMMENTS = 1_000
_JIRA_PAGE = 100
_POSITION_TIMEOUT = timedelta(seconds=5)


class StatusComments:
    def __init__(
        self,
        jira: JiraAccess | None,
        github_factory: Callable[[], github.Github] | None,
        client: Client | None,
        ui_url: str,
        namespace: str,
    ) -> None:
        self._jira = jira
        self._github_factory = github_factory
        self._client = client
        self._ui_url = ui_url
        self._namespace = namespace

    @activity.defn(name="post_status_comment")
    async def post_status_comment(self, input: StatusCommentInput) -> StatusCommentResult:
        link = web_ui_link(self._ui_url, self._namespace, input.job_id)
        position = await self._place_in_line(input) if input.phase == "QUEUED" else None
        if input.source == "jira" and self._jira is not None:
            text = status_text(input, link, position, html_marker=False)
            return await asyncio.to_thread(self._on_jira, input, text)
        if input.source == "github" and self._github_factory is not None:
            text = status_text(input, link, position, html_marker=True)
            return await asyncio.to_thread(self._on_github, input, text)
        activity.logger.info("job %s: no %s access for its status comment", input.job_id, input.source)
        return StatusCommentResult()

    async def _place_in_line(self, input: StatusCommentInput) -> int | None:
        if self._client is None or not input.claim_workflow_id:
            return None
        try:
            handle = self._client.get_workflow_handle(input.claim_workflow_id)
            return await handle.query("position", input.job_id, rpc_timeout=_POSITION_TIMEOUT)
        except Exception as err:  # the claim may have ended or be busy: the comment says less, that is all
            activity.logger.info("queue position of %s unknown: %s", input.job_id, err)
            return None

    def _on_jira(self, input: StatusCommentInput, text: str) -> StatusCommentResult:
        base = self._jira.base_url.rstrip("/")
        url = f"{base}/rest/api/2/issue/{input.key}/comment"
        # The marker goes with the body in the same call (create or edit), so no comment is ever ours
        # without being marked as ours; an edit of a comment marked in its text moves it to the property.
        # Jira's Comment schema (REST API v2, POST and PUT .../issue/{key}/comment): `properties`, "A list
        # of comment properties. Optional on create and update."; each an EntityProperty {key, value},
        # the key at most 255 characters, the value JSON.
        payload = {
            "body": text,
            "properties": [status_property(input.job_id, input.run_id, input.seq)],
        }
        with self._jira.session() as session:
            existing, shown = self._find_on_jira(session, base, input)
            if existing is None:
                created = jira_json(session.post(url, json=payload, timeout=_JIRA_TIMEOUT), input.key)
                return StatusCommentResult(
                    left_at=f"jira {input.key} comment {created.get('id')}", action="created"
                )
            where = f"jira {input.key} comment {existing.get('id')}"
            if _newer_shown(shown, input):
                return StatusCommentResult(left_at=where, action="kept")
            jira_json(
                session.put(f"{url}/{existing.get('id')}", json=payload, timeout=_JIRA_TIMEOUT),
                input.key,
            )
        return StatusCommentResult(left_at=where, action="edited")

    def _find_on_jira(
        self, session: requests.Session, base: str, input: StatusCommentInput
    ) -> tuple[dict | None, tuple[str, int] | None]:
        """The job's comment and the (run, seq) it shows: the one whose property names the job, else one
        an older conductor marked in its text (only then are all pages read: a text marker is anyone's
        to write, the property wins wherever it is)."""
        url = f"{base}/rest/api/2/issue/{input.key}/comment"
        marked_in_text = None
        for start in range(0, _MAX_COMMENTS, _JIRA_PAGE):
            page = jira_json(
                session.get(
                    url,
                    params={"startAt": start, "maxResults": _JIRA_PAGE, "orderBy": "created"},
                    timeout=_JIRA_TIMEOUT,
                ),
                input.key,
            )
            comments = page.get("comments", [])
            properties = _jira_properties(session, base, [c.get("id") for c in comments], input.key)
            for comment in comments:
                shown = read_status_property(properties.get(str(comment.get("id"))), input.job_id)
                if shown is not None:
                    return comment, shown
                if marked_in_text is None:
                    shown = read_status_marker(comment.get("body", ""), input.job_id)
                    if shown is not None:
                        marked_in_text = (comment, shown)
            if start + len(comments) >= page.get("total", 0) or not comments:
                break
        return marked_in_text or (None, None)

    def _on_github(self, input: StatusCommentInput, text: str) -> StatusCommentResult:
        repo_name, _, number = input.key.partition("#")
        gh = self._github_factory()
        try:
            issue = gh.get_repo(repo_name).get_issue(int(number))
            existing = None
            for index, comment in enumerate(issue.get_comments()):
                if index >= _MAX_COMMENTS:
                    break
                if _ours(comment.body or "", input):
                    existing = comment
                    break
            if existing is None:
                created = issue.create_comment(text)
                return StatusCommentResult(
                    left_at=f"github {input.key} comment {created.id}", action="created"
                )
            where = f"github {input.key} comment {existing.id}"
            if _newer_shown(read_status_marker(existing.body or "", input.job_id), input):
                return StatusCommentResult(left_at=where, action="kept")
            existing.edit(text)
            return StatusCommentResult(left_at=where, action="edited")
        except GithubException as e:
            raise github_error(e, f"status comment on {input.key}") from e
        finally:
            gh.close()


def _jira_properties(session: requests.Session, base: str, ids: list, key: str) -> dict[str, list]:
    """Comment id -> its properties, read with Jira's "get comments by IDs" (POST /rest/api/2/comment/list
    ?expand=properties, body {"ids": [...]}, at most 1,000 ids; a page {"startAt", "maxResults",
    "total", "isLast", "values": [comment with "properties": [{"key", "value"}]]}: Jira Cloud platform
    REST API v2, Issue comments, developer.atlassian.com/cloud/jira/platform/rest/v2/api-group-issue-comments/).
    Listing an issue's comments cannot expand properties (its `expand` takes only renderedBody). The
    page may hold fewer comments than asked for: the rest are asked again; an id Jira does not answer
    (deleted meanwhile, or not visible) is left out."""
    wanted = {str(i) for i in ids if str(i).isdigit()}
    found: dict[str, list] = {}
    while wanted:  # each round answers at least one id, or stops: at most len(ids) rounds
        page = jira_json(
            session.post(
                f"{base}/rest/api/2/comment/list",
                params={"expand": "properties"},
                json={"ids": sorted(int(i) for i in wanted)},
                timeout=_JIRA_TIMEOUT,
            ),
            key,
        )
        answered = {
            str(c.get("id")): c.get("properties") or []
            for c in page.get("values", [])
            if str(c.get("id")) in wanted
        }
        if not answered:
            break
        found.update(answered)
        wanted -= answered.keys()
    return found


def _ours(body: str, input: StatusCommentInput) -> bool:
    return read_status_marker(body, input.job_id) is not None


def _newer_shown(shown: tuple[str, int], input: StatusCommentInput) -> bool:
    """The comment already shows this edit or a later one of the same run (a retry, or a late edit)."""
    run_id, seq = shown
    return run_id == input.run_id and seq >= input.seq


def github_error(e: GithubException, what: str) -> ApplicationError:
    """4xx but rate limits: retrying cannot help (bad token, no permission, no such issue, invalid body)."""
    data = e.data if isinstance(e.data, dict) else {}
    final = 400 <= e.status < 500 and e.status != 429 and not isinstance(e, RateLimitExceededException)
    return ApplicationError(
        f"GitHub {what} failed: HTTP {e.status} {data.get('message', '')}".strip(),
        type=f"GithubHttp{e.status}",
        non_retryable=final,
    )
