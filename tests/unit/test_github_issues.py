"""GitHub issues as tickets: the event decisions, the key's form, its ids, its PR's closing line."""

import json

import pytest

from activities.pr_text import pr_body
from conductor_worker.intake.github_issues import issue_event
from conductor_worker.intake.poison import PoisonMessage
from conductor_worker.intake.webhooks import signature_matches
from contracts.ids import ticket_branch, ticket_job_id, ticket_workflow_id
from contracts.jobs import ticket_work_item
from tests.github_webhooks import issues_event, sign


def event(action: str, number: int = 7, **options):
    return issue_event(json.loads(issues_event(action, number, **options)), "agent")


def test_the_trigger_label_starts_removing_it_or_closing_cancels_anything_else_is_ignored():
    started = event("labeled")
    assert started.action == "start"
    ticket = started.ticket
    assert (ticket.source, ticket.key, ticket.project) == ("github", "acme/app#7", "acme/app")
    assert ticket.github_issue == ("acme/app", 7)
    assert event("unlabeled", labels=()).action == "cancel"
    assert event("closed").action == "cancel"
    assert event("closed", labels=("bug",)).action == "ignore"
    assert event("labeled", label="bug").action == "ignore"
    assert event("edited").action == "ignore"


def test_a_pull_request_is_not_an_issue_and_a_shapeless_event_is_refused():
    payload = json.loads(issues_event("labeled", 7))
    payload["issue"]["pull_request"] = {"url": "https://api.github.com/repos/acme/app/pulls/7"}
    assert issue_event(payload, "agent").action == "ignore"
    with pytest.raises(PoisonMessage, match="issue"):
        issue_event({"action": "labeled"}, "agent")
    payload = json.loads(issues_event("labeled", 7))
    payload["repository"]["full_name"] = "no-slash"
    with pytest.raises(PoisonMessage, match="is not a GitHub key"):
        issue_event(payload, "agent")


def test_one_issue_one_workflow_whatever_the_case_of_its_names():
    upper = json.loads(issues_event("labeled", 7))
    upper["repository"]["full_name"] = "Acme/App"
    ticket = issue_event(upper, "agent").ticket
    assert ticket.key == "acme/app#7"
    assert ticket_workflow_id("github", ticket.key) == "ticket/github/acme/app/7"
    assert ticket_job_id("github", ticket.key) == "job/ticket/github/acme/app/7"
    assert ticket_branch(ticket.key) == "conductor/acme/app-7"


def test_the_pr_closes_its_issue_from_its_own_repository_and_from_another():
    item = ticket_work_item(event("labeled").ticket)
    assert "Fixes #7" in pr_body(item, "job", "done", repo="acme/app")
    assert "Fixes acme/app#7" in pr_body(item, "job", "done", repo="acme/other")
    jira = item.model_copy(update={"key": "ENG-7"})
    assert "Fixes" not in pr_body(jira, "job", "done", repo="acme/app")


def test_signatures_are_checked_against_the_raw_body():
    body = b'{"a": 1}'
    assert signature_matches("s3cret", body, sign("s3cret", body))
    assert not signature_matches("s3cret", body, sign("other", body))
    assert not signature_matches("s3cret", body + b" ", sign("s3cret", body))
    assert not signature_matches("s3cret", body, None)
    assert not signature_matches("s3cret", body, "")
