"""One live status comment per job, edited through its life, on a Jira ticket and on a GitHub issue.

Real conductor (in this process, or as `conductor serve` processes for the kill), real dev server, real
git and agent subprocesses; Jira's and GitHub's REST APIs are the stand-ins in tests/, which keep every
body each comment had, so the test reads the comment's whole life: accepted, queued, running, pull
request, succeeded.
"""

import asyncio
from pathlib import Path

import pytest
from pydantic import SecretStr

from conductor_worker.intake import SqsIntake
from conductor_worker.messages import parse_message
from contracts.ids import ticket_workflow_id
from contracts.jobs import JobResult, JobState
from contracts.tickets import TicketMessage
from tests.git_helpers import make_bare_repo_from
from tests.github_standin import GithubStandin
from tests.helpers import EXAMPLES, fresh_key, ticket_body
from tests.jira_standin import JiraStandin

REPO = "acme/widgets"
JIRA_EMAIL, JIRA_TOKEN, GH_TOKEN = "conductor@acme.test", "jira-secret", "gh-token"
# The life a successful job's comment shows, in this order (each an edit of the one comment).
LIFE = [
    "Status: ACCEPTED",
    "Status: QUEUED (attempt 1)",
    "Status: RUNNING (attempt 1)",
    "Status: pull request opened (attempt 1)",
    "Status: SUCCEEDED (attempt 1)",
]


@pytest.fixture
def jira():
    with JiraStandin(email=JIRA_EMAIL, token=JIRA_TOKEN) as standin:
        yield standin


@pytest.fixture
def gh():
    with GithubStandin(token=GH_TOKEN, repos=[REPO]) as standin:
        yield standin


@pytest.fixture
def status_settings(settings, jira, gh, tmp_path: Path):
    """Jira tickets of ENG go to acme/widgets through the GitHub publisher (so there is a PR to link); a
    GitHub issue goes to its own repository. Both sources have credentials: status comments are on."""
    remote = make_bare_repo_from(EXAMPLES / "sample-repo", tmp_path / "github" / f"{REPO}.git")
    routes = tmp_path / "status-routes.yaml"
    routes.write_text(
        "tickets:\n  - project: ENG\n    route:\n"
        f"      {{repo_url: {remote}, publisher: github, github_repo: {REPO}, name: widgets}}\n"
    )
    return settings.model_copy(
        update={
            "routes_file": routes,
            "jira_base_url": jira.base_url,
            "jira_email": JIRA_EMAIL,
            "jira_api_token": SecretStr(JIRA_TOKEN),
            "github_api_url": gh.base_url,
            "github_token": SecretStr(GH_TOKEN),
            "github_clone_url": str(tmp_path / "github" / "{repo}.git"),
        }
    )


def assert_lived(history: list[str], pr_url: str) -> None:
    """Every phase of LIFE appears, in order, in the comment's successive bodies."""
    seen = [next((i for i, body in enumerate(history) if phase in body), None) for phase in LIFE]
    assert None not in seen, f"phases missing from {[body.splitlines()[3] for body in history]}"
    assert seen == sorted(seen), f"phases out of order: {seen}"
    assert pr_url in history[-1] and "Status: SUCCEEDED" in history[-1]
    assert "Temporal Web UI: http://localhost:8233/namespaces/default/workflows/job%2Fticket%2F" in history[0]


async def finished(client, source: str, key: str):
    handle = client.get_workflow_handle(ticket_workflow_id(source, key), result_type=JobResult)
    return await asyncio.wait_for(handle.result(), 90)


@pytest.mark.timeout(120)
async def test_a_jira_ticket_has_one_comment_edited_through_the_jobs_life(
    client, status_settings, start_conductor, jira, gh
):
    key = fresh_key()
    jira.add_issue(key)
    await start_conductor(status_settings)
    await SqsIntake(client, status_settings, None).start_ticket(parse_message(ticket_body(key)))

    result = await finished(client, "jira", key)

    assert result.state == JobState.SUCCEEDED and result.pr_url
    [history] = jira.comment_history(key)  # one comment, however many edits
    assert_lived(history, result.pr_url)
    assert history[-1].rstrip().endswith("{color}") and f"job=job/ticket/jira/{key} " in history[-1]


@pytest.mark.timeout(120)
async def test_a_github_issue_has_one_comment_edited_through_the_jobs_life(
    client, status_settings, start_conductor, gh
):
    number = gh.add_issue(REPO, "Greet in French")
    ticket = TicketMessage(source="github", key=f"{REPO}#{number}", summary="Greet in French", project=REPO)
    await start_conductor(status_settings)
    await SqsIntake(client, status_settings, None).start_ticket(ticket)

    result = await finished(client, "github", ticket.key)

    assert result.state == JobState.SUCCEEDED and result.pr_url
    [history] = gh.comment_history(REPO, number)
    assert_lived(history, result.pr_url)
    assert f"<!-- agent-conductor:job=job/ticket/github/{REPO}/{number} run=" in history[-1]
