"""Status comments and incident reports, activity by activity, against the Jira and GitHub stand-ins.

Each activity is run as Temporal runs it after a retry or a conductor killed mid-call: again, with the
same input. The comment (or issue) is found by its marker and edited, never posted twice; an edit older
than the one shown changes nothing; a 4xx is final, a 5xx is retried. On Jira the marker is a comment
property, not text; a comment an older conductor marked in its text is still found, and moves to the
property.
"""

from datetime import UTC, datetime, timedelta

import github
import pytest
import requests
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

import activities.status_comment
from activities.failure_notes import JiraAccess
from activities.incident_report import INCIDENT_LABEL, IncidentReports
from activities.status_comment import StatusComments
from contracts.activity_io import FailureNoteInput
from contracts.jobs import JobSpec, JobState, WorkItem
from contracts.status import (
    IncidentOutcome,
    IncidentReportInput,
    StatusCommentInput,
    incident_marker,
    status_marker,
)
from tests.github_standin import GithubStandin
from tests.jira_standin import LIST_PAGE, JiraStandin

REPO = "acme/widgets"
UI = "http://temporal-ui.test:8233"


@pytest.fixture
def jira():
    with JiraStandin(email="bot@acme.test", token="jira-token", issues=["ENG-1", "ENG-12"]) as standin:
        yield standin


@pytest.fixture
def gh():
    with GithubStandin(token="gh-token", repos=[REPO]) as standin:
        yield standin


def github_factory(standin: GithubStandin):
    def make() -> github.Github:
        return github.Github(
            base_url=standin.base_url,
            auth=github.Auth.Token("gh-token"),
            seconds_between_requests=None,
            seconds_between_writes=None,
            retry=None,
        )

    return make


def comments_on(jira: JiraStandin | None = None, gh: GithubStandin | None = None) -> StatusComments:
    access = JiraAccess(jira.base_url, "jira-token", "bot@acme.test") if jira else None
    return StatusComments(access, github_factory(gh) if gh else None, None, UI, "default")


def edit(key: str, seq: int, phase: str, source: str = "jira", job: str = "", **fields) -> StatusCommentInput:
    job_id = job or f"job/ticket/{source}/{key.replace('#', '/')}"
    return StatusCommentInput(
        job_id=job_id, run_id="run-1", seq=seq, source=source, key=key, phase=phase, **fields
    )


async def post(activities: StatusComments, input: StatusCommentInput):
    return await ActivityEnvironment().run(activities.post_status_comment, input)


async def test_jira_one_comment_edited_in_place_and_a_retry_changes_nothing(jira):
    status = comments_on(jira=jira)

    created = await post(status, edit("ENG-1", 1, "ACCEPTED"))
    again = await post(status, edit("ENG-1", 1, "ACCEPTED"))  # the same edit retried
    running = await post(status, edit("ENG-1", 2, "RUNNING", latest_event="command: pytest (exit 0)"))
    late = await post(status, edit("ENG-1", 1, "ACCEPTED"))  # an older edit arriving late

    assert (created.action, again.action, running.action, late.action) == (
        "created",
        "kept",
        "edited",
        "kept",
    )
    assert created.left_at == running.left_at == "jira ENG-1 comment 10000"
    [history] = jira.comment_history("ENG-1")
    assert len(history) == 2, "one creation and one edit"
    assert "Status: ACCEPTED" in history[0]
    assert "Status: RUNNING (attempt 1)" in history[1] and "command: pytest (exit 0)" in history[1]
    link = f"{UI}/namespaces/default/workflows/job%2Fticket%2Fjira%2FENG-1"
    assert link in history[1]
    # People see no marker; the comment's property names the job, its run and the edit shown.
    assert not any("agent-conductor:" in body or "{color" in body for body in history)
    assert jira.comment_properties("ENG-1") == [
        {"agent-conductor.status": {"job_id": "job/ticket/jira/ENG-1", "run_id": "run-1", "seq": 2}}
    ]
    posts = [path for method, path in jira.calls if method == "POST" and path.endswith("/comment")]
    assert posts == ["/rest/api/2/issue/ENG-1/comment"], "the marker came with the comment, in one call"


def _marked_in_text(job_id: str, run_id: str, seq: int) -> str:
    """A status comment as conductors before comment properties wrote it: the marker a grey last line."""
    return (
        f"Agent Conductor · job {job_id}\n\nStatus: ACCEPTED, the job will start shortly.\n\n"
        f"{{color:#97a0af}}{status_marker(job_id, run_id, seq)}{{color}}"
    )


async def test_jira_a_comment_marked_in_its_text_by_an_older_conductor_is_edited_and_moved(jira):
    """A conductor upgraded mid-job finds the comment its predecessor posted: no second comment. Its
    next edit sets the property and drops the visible marker; later edits find it by the property."""
    _jira_comment(jira, "a person's comment")
    _jira_comment(jira, _marked_in_text("job/ticket/jira/ENG-1", "run-1", 1))
    status = comments_on(jira=jira)

    retried = await post(status, edit("ENG-1", 1, "ACCEPTED"))  # the same edit, retried after upgrade
    running = await post(status, edit("ENG-1", 2, "RUNNING"))
    late = await post(status, edit("ENG-1", 1, "ACCEPTED"))
    pr = await post(status, edit("ENG-1", 3, "PR_OPENED", pr_url="https://git.test/pr/1"))

    assert (retried.action, running.action, late.action, pr.action) == ("kept", "edited", "kept", "edited")
    assert running.left_at == pr.left_at == "jira ENG-1 comment 10001"
    _, history = jira.comment_history("ENG-1")
    assert len(history) == 3 and "{color:#97a0af}agent-conductor:" in history[0]
    assert "Status: RUNNING" in history[1] and "pull request opened" in history[2]
    assert not any("agent-conductor:" in body for body in history[1:]), "the visible marker is gone"
    assert jira.comment_properties("ENG-1")[1] == {
        "agent-conductor.status": {"job_id": "job/ticket/jira/ENG-1", "run_id": "run-1", "seq": 3}
    }


async def test_jira_without_the_property_lookup_the_next_edit_posts_a_second_comment(jira, monkeypatch):
    """Protection off: the text carries no marker, so a conductor that did not read the comments'
    properties would not find its comment again and would post another one."""
    status = comments_on(jira=jira)
    await post(status, edit("ENG-1", 1, "ACCEPTED"))
    await post(status, edit("ENG-1", 2, "RUNNING"))
    assert len(jira.comments("ENG-1")) == 1

    monkeypatch.setattr(activities.status_comment, "read_status_property", lambda properties, job_id: None)
    await post(status, edit("ENG-1", 3, "SUCCEEDED"))
    assert len(jira.comments("ENG-1")) == 2, "found by the property only: without it, a second comment"


async def test_jira_a_property_jira_refuses_is_a_final_error(jira, monkeypatch):
    def too_long_a_key(job_id: str, run_id: str, seq: int) -> dict:
        return {"key": "k" * 256, "value": {"job_id": job_id, "run_id": run_id, "seq": seq}}

    monkeypatch.setattr(activities.status_comment, "status_property", too_long_a_key)
    with pytest.raises(ApplicationError) as refused:
        await post(comments_on(jira=jira), edit("ENG-1", 1, "ACCEPTED"))
    assert refused.value.non_retryable and "HTTP 400" in refused.value.message
    assert "255 characters" in refused.value.message
    assert jira.comments("ENG-1") == []


async def test_jira_a_job_whose_id_extends_another_gets_its_own_comment(jira):
    """ENG-1's marker must not be found in ENG-12's comment (both tickets' jobs comment on ENG-12 here)."""
    status = comments_on(jira=jira)
    await post(status, edit("ENG-12", 1, "ACCEPTED", job="job/ticket/jira/ENG-12"))
    await post(status, edit("ENG-12", 1, "ACCEPTED", job="job/ticket/jira/ENG-1"))
    assert len(jira.comments("ENG-12")) == 2


def test_the_jira_standin_answers_comment_properties_as_jira_does(jira):
    """The stand-in's side of the contract the activity relies on (Jira Cloud REST API v2)."""
    auth = ("bot@acme.test", "jira-token")
    add = f"{jira.base_url}/rest/api/2/issue/ENG-1/comment"
    by_id = f"{jira.base_url}/rest/api/2/comment/list"
    prop = {"key": "agent-conductor.status", "value": {"seq": 1}}
    assert requests.post(add, json={"body": "x", "properties": [prop]}, auth=auth, timeout=10).ok
    for bad in ({"key": "k" * 256, "value": 1}, {"key": "k", "value": {}}, {"key": 7, "value": 1}):
        refused = requests.post(add, json={"body": "x", "properties": [bad]}, auth=auth, timeout=10)
        assert refused.status_code == 400 and refused.json()["errorMessages"], bad
    assert len(jira.comments("ENG-1")) == 1, "a refused comment is not stored"
    listed = requests.get(add, auth=auth, timeout=10).json()["comments"]
    assert "properties" not in listed[0], "listing an issue's comments does not carry them"

    page = requests.post(
        by_id, params={"expand": "properties"}, json={"ids": [10000, 99999]}, auth=auth, timeout=10
    ).json()
    assert (page["total"], page["isLast"]) == (1, True), "an unknown id is simply absent"
    assert page["values"][0]["properties"] == [prop]
    plain = requests.post(by_id, json={"ids": [10000]}, auth=auth, timeout=10).json()
    assert "properties" not in plain["values"][0]
    too_many = requests.post(by_id, json={"ids": list(range(1001))}, auth=auth, timeout=10)
    assert too_many.status_code == 400


async def test_jira_finds_its_comment_past_the_first_page(jira):
    for n in range(120):  # people talk: the status comment will be on the second of two pages
        _jira_comment(jira, f"comment {n}")
    status = comments_on(jira=jira)
    await post(status, edit("ENG-1", 1, "ACCEPTED"))
    jira.calls.clear()
    await post(status, edit("ENG-1", 2, "RUNNING"))
    assert len(jira.comments("ENG-1")) == 121
    assert "Status: RUNNING" in jira.comments("ENG-1")[120]
    # Each page of comments (100, then 21) has its properties got by id, LIST_PAGE at a time.
    by_id = [path for _, path in jira.calls if path == "/rest/api/2/comment/list"]
    assert len(by_id) == -(-100 // LIST_PAGE) + -(-21 // LIST_PAGE)
    assert [method for method, _ in jira.calls if method in ("GET", "PUT")] == ["GET", "GET", "PUT"]


async def test_jira_the_property_wins_over_a_marker_quoted_in_an_earlier_comment(jira):
    """The text marker older conductors wrote is anyone's to paste; a comment's property is set by the
    conductor only. A quote on the first page does not hide the job's own comment on the second."""
    job = "job/ticket/jira/ENG-1"
    _jira_comment(jira, f"as the bot said: {_marked_in_text(job, 'run-1', 99)}")
    for n in range(110):
        _jira_comment(jira, f"comment {n}")
    ours = {"key": "agent-conductor.status", "value": {"job_id": job, "run_id": "run-1", "seq": 1}}
    _jira_comment(jira, "Agent Conductor · job (posted with its property)", properties=[ours])

    result = await post(comments_on(jira=jira), edit("ENG-1", 2, "RUNNING"))

    assert result.action == "edited" and result.left_at == "jira ENG-1 comment 10111"
    assert "Status: RUNNING" in jira.comments("ENG-1")[111]
    assert "as the bot said" in jira.comments("ENG-1")[0], "the quote is left alone"


def _jira_comment(jira: JiraStandin, text: str, properties: list | None = None) -> None:
    url = f"{jira.base_url}/rest/api/2/issue/ENG-1/comment"
    payload = {"body": text} | ({"properties": properties} if properties else {})
    requests.post(url, json=payload, auth=("bot@acme.test", "jira-token"), timeout=10).raise_for_status()


async def test_jira_errors_a_4xx_is_final_a_5xx_is_retried(jira):
    status = comments_on(jira=jira)
    jira.fail_next(503)
    with pytest.raises(ApplicationError) as overloaded:
        await post(status, edit("ENG-1", 1, "ACCEPTED"))
    assert not overloaded.value.non_retryable and "503" in overloaded.value.message
    jira.fail_next(403)
    with pytest.raises(ApplicationError) as refused:
        await post(status, edit("ENG-1", 1, "ACCEPTED"))
    assert refused.value.non_retryable and "refused access" in refused.value.message
    with pytest.raises(ApplicationError) as unknown:
        await post(status, edit("OPS-9", 1, "ACCEPTED"))
    assert unknown.value.non_retryable and "HTTP 404" in unknown.value.message
    assert jira.comments("ENG-1") == [], "nothing was posted by the failed calls"


async def test_jira_an_ending_carries_the_failure_note(jira):
    spec = JobSpec(
        job_id="job/ticket/jira/ENG-1",
        work=WorkItem(kind="ticket", key="ENG-1", summary="Fix it"),
        branch="conductor/ENG-1",
    )
    note = FailureNoteInput(
        spec=spec, attempt=1, state=JobState.FAILED, reason="agent reported script failure"
    )
    await post(comments_on(jira=jira), edit("ENG-1", 1, "FAILED", note=note))
    [comment] = jira.comments("ENG-1")
    assert "ended FAILED" in comment and "agent reported script failure" in comment
    assert "--name retry" in comment


async def test_github_issue_one_comment_edited_in_place_with_a_hidden_marker(gh):
    number = gh.add_issue(REPO, "Crash on start")
    key = f"{REPO}#{number}"
    status = comments_on(gh=gh)

    await post(status, edit(key, 1, "ACCEPTED", source="github"))
    await post(status, edit(key, 1, "ACCEPTED", source="github"))  # retried
    await post(status, edit(key, 2, "PR_OPENED", source="github", pr_url=f"{gh.base_url}/{REPO}/pull/2"))
    await post(status, edit(key, 3, "SUCCEEDED", source="github", pr_url=f"{gh.base_url}/{REPO}/pull/2"))

    [history] = gh.comment_history(REPO, number)
    assert len(history) == 3
    assert "pull request opened" in history[1] and "Status: SUCCEEDED" in history[2]
    assert (
        history[2]
        .rstrip()
        .endswith(f"<!-- agent-conductor:job=job/ticket/github/{REPO}/{number} run=run-1 seq=3 -->")
    )


async def test_github_errors_a_4xx_is_final_a_5xx_is_retried(gh):
    number = gh.add_issue(REPO)
    status = comments_on(gh=gh)
    gh.fail_next(502)
    with pytest.raises(ApplicationError) as flaky:
        await post(status, edit(f"{REPO}#{number}", 1, "ACCEPTED", source="github"))
    assert not flaky.value.non_retryable
    with pytest.raises(ApplicationError) as missing:
        await post(status, edit(f"{REPO}#99", 1, "ACCEPTED", source="github"))
    assert missing.value.non_retryable and "HTTP 404" in missing.value.message
    assert gh.comments(REPO, number) == []


T0 = datetime(2026, 5, 12, 20, 0, tzinfo=UTC)
CHAIN = "incident/204772699175/2026-05-12T20:00:00Z"


def report(count: int, names: list[str], outcomes: list[IncidentOutcome]) -> IncidentReportInput:
    return IncidentReportInput(
        chain_id=CHAIN,
        account="204772699175",
        github_repo=REPO,
        alarm_count=count,
        first_at=T0,
        last_at=T0 + timedelta(minutes=count),
        alarm_names=names,
        outcomes=outcomes,
    )


async def test_incident_report_one_issue_per_chain_edited_in_place(gh):
    reports = IncidentReports(github_factory(gh))
    failed = IncidentOutcome(
        job_id=CHAIN, state="FAILED", reason="agent reported script failure", report="disk full"
    )
    gh.add_issue(REPO, "Someone else's issue")

    first = await ActivityEnvironment().run(reports.report_incident, report(1, ["disk-full"], [failed]))
    retried = await ActivityEnvironment().run(reports.report_incident, report(1, ["disk-full"], [failed]))
    later = await ActivityEnvironment().run(
        reports.report_incident, report(2, ["api-5xx", "disk-full"], [failed])
    )

    assert (first.action, retried.action, later.action) == ("created", "kept", "edited")
    ours = [issue for issue in gh.issues(REPO) if incident_marker(CHAIN) in issue["body"]]
    assert len(ours) == 1 and first.issue_url == later.issue_url
    [issue] = ours
    assert [label["name"] for label in issue["labels"]] == [INCIDENT_LABEL]
    assert "- count: 2" in issue["body"] and "`api-5xx`" in issue["body"] and "disk full" in issue["body"]
    assert "FAILED" in issue["title"]


async def test_incident_report_refused_is_final(gh):
    reports = IncidentReports(github_factory(gh))
    gh.fail_next(403)
    with pytest.raises(ApplicationError) as refused:
        await ActivityEnvironment().run(reports.report_incident, report(1, ["disk-full"], []))
    assert refused.value.non_retryable
