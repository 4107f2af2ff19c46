"""Status comments and incident reports, activity by activity, against the Jira and GitHub stand-ins.

Each activity is run as Temporal runs it after a retry or a conductor killed mid-call: again, with the
same input. The comment (or issue) is found by its marker and edited, never posted twice; an edit older
than the one shown changes nothing; a 4xx is final, a 5xx is retried.
"""

from datetime import UTC, datetime, timedelta

import github
import pytest
import requests
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

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
)
from tests.github_standin import GithubStandin
from tests.jira_standin import JiraStandin

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


async def test_jira_a_job_whose_id_extends_another_gets_its_own_comment(jira):
    """ENG-1's marker must not be found in ENG-12's comment (both tickets' jobs comment on ENG-12 here)."""
    status = comments_on(jira=jira)
    await post(status, edit("ENG-12", 1, "ACCEPTED", job="job/ticket/jira/ENG-12"))
    await post(status, edit("ENG-12", 1, "ACCEPTED", job="job/ticket/jira/ENG-1"))
    assert len(jira.comments("ENG-12")) == 2


async def test_jira_finds_its_comment_past_the_first_page(jira):
    status = comments_on(jira=jira)
    await post(status, edit("ENG-1", 1, "ACCEPTED"))
    for n in range(120):  # people talk: the status comment is on the first of two pages
        _jira_comment(jira, f"comment {n}")
    await post(status, edit("ENG-1", 2, "RUNNING"))
    assert len(jira.comments("ENG-1")) == 121
    assert "Status: RUNNING" in jira.comments("ENG-1")[0]


def _jira_comment(jira: JiraStandin, text: str) -> None:
    url = f"{jira.base_url}/rest/api/2/issue/ENG-1/comment"
    requests.post(
        url, json={"body": text}, auth=("bot@acme.test", "jira-token"), timeout=10
    ).raise_for_status()


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
