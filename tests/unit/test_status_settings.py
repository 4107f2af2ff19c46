"""Status comments and incident reports: when they are on, and the markers that find them again."""

import pytest
from pydantic import SecretStr
from temporalio.testing import ActivityEnvironment

from activities.routing import Router
from activities.status_text import place_in_line, status_text, web_ui_link
from conductor_worker.config import Settings
from contracts.activity_io import RouteTicketInput
from contracts.status import (
    STATUS_PROPERTY_KEY,
    StatusCommentInput,
    read_status_marker,
    read_status_property,
    status_marker,
    status_property,
)
from contracts.tickets import TicketMessage


@pytest.mark.parametrize(
    ("fields", "sources", "reports"),
    [
        ({}, set(), False),
        ({"jira_base_url": "https://acme.atlassian.net"}, {"jira"}, False),
        ({"github_token": SecretStr("t")}, {"github"}, True),
        ({"jira_base_url": "https://j", "github_token": SecretStr("t")}, {"jira", "github"}, True),
        ({"jira_base_url": "https://j", "status_comments": False}, set(), False),
        ({"github_token": SecretStr("t"), "incident_reports": False}, {"github"}, False),
        # Asked for, but nothing to post with: off.
        ({"status_comments": True, "incident_reports": True}, set(), False),
    ],
)
def test_on_where_a_source_has_credentials_unless_turned_off(fields, sources, reports):
    settings = Settings(**fields)
    assert settings.status_comment_sources == sources
    assert settings.incident_reports_enabled is reports


async def test_routing_says_whether_the_ticket_gets_a_status_comment(tmp_path):
    routes = tmp_path / "routes.yaml"
    routes.write_text("tickets:\n  - route: {repo_url: /srv/app.git, name: app}\n")
    jira_ticket = TicketMessage(key="ENG-1", summary="s")
    github_ticket = TicketMessage(source="github", key="acme/app#3", summary="s", project="acme/app")
    router = Router(routes, status_comment_sources=frozenset({"jira"}))
    env = ActivityEnvironment()
    assert (await env.run(router.route_ticket, RouteTicketInput(ticket=jira_ticket))).status_comments
    assert not (await env.run(router.route_ticket, RouteTicketInput(ticket=github_ticket))).status_comments


def test_a_marker_names_its_job_exactly():
    body = f"text\n<!-- {status_marker('job/ticket/jira/ENG-12', 'run-a', 7)} -->"
    assert read_status_marker(body, "job/ticket/jira/ENG-12") == ("run-a", 7)
    assert read_status_marker(body, "job/ticket/jira/ENG-1") is None
    assert read_status_marker("no marker", "job/ticket/jira/ENG-12") is None


def test_a_jira_property_names_its_job_exactly_and_an_odd_one_is_not_ours():
    ours = status_property("job/ticket/jira/ENG-12", "run-a", 7)
    assert ours == {
        "key": "agent-conductor.status",
        "value": {"job_id": "job/ticket/jira/ENG-12", "run_id": "run-a", "seq": 7},
    }
    other = {"key": "sd.public.comment", "value": {"internal": False}}
    assert read_status_property([other, ours], "job/ticket/jira/ENG-12") == ("run-a", 7)
    assert read_status_property([other, ours], "job/ticket/jira/ENG-1") is None
    assert read_status_property([other], "job/ticket/jira/ENG-12") is None
    job = "job/ticket/jira/ENG-12"
    for odd in (
        None,
        "text",
        [{"key": STATUS_PROPERTY_KEY, "value": "job/ticket/jira/ENG-12"}],
        [{"key": STATUS_PROPERTY_KEY, "value": {"job_id": job, "run_id": "r", "seq": "7"}}],
        [{"key": STATUS_PROPERTY_KEY, "value": {"job_id": job, "run_id": "r", "seq": True}}],
        [{"key": STATUS_PROPERTY_KEY, "value": {"job_id": job, "seq": 7}}],
    ):
        assert read_status_property(odd, job) is None, odd


def test_the_text_hides_the_marker_on_github_and_has_none_on_jira():
    edit = StatusCommentInput(
        job_id="job/ticket/jira/ENG-1", run_id="r", seq=2, source="jira", key="ENG-1", phase="QUEUED"
    )
    link = web_ui_link("http://ui:8233/", "default", edit.job_id)
    assert link == "http://ui:8233/namespaces/default/workflows/job%2Fticket%2Fjira%2FENG-1"
    github = status_text(edit, link, 2, html_marker=True)
    jira = status_text(edit, link, 2, html_marker=False)
    assert "number 2 in line" in github and github.endswith(
        "<!-- agent-conductor:job=job/ticket/jira/ENG-1 run=r seq=2 -->"
    )
    # Jira's wiki markup cannot hide text: the marker is the comment's property, the text has none.
    assert "number 2 in line" in jira and "agent-conductor:" not in jira and "{color" not in jira
    assert [place_in_line(p) for p in (None, -1, 0)] == [
        "waiting for the repository",
        "waiting for the repository",
        "the repository is free: starting",
    ]
