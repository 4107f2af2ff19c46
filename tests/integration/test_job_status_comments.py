"""One live status comment per job, edited through its life, on a Jira ticket and on a GitHub issue.

Real conductor (in this process, or as `conductor serve` processes for the kill), real dev server, real
git and agent subprocesses; Jira's and GitHub's REST APIs are the stand-ins in tests/, which keep every
body each comment had, so the test reads the comment's whole life: accepted, queued, running, pull
request, succeeded.
"""

import asyncio
import os
import signal
import uuid
from pathlib import Path

import pytest
from pydantic import SecretStr

from conductor_worker.intake.messages import parse_message
from conductor_worker.intake.sqs import SqsIntake
from contracts.ids import ticket_workflow_id
from contracts.jobs import JobResult, JobState
from contracts.tickets import TicketMessage
from tests.git_helpers import make_bare_repo_from
from tests.github_standin import GithubStandin
from tests.helpers import EXAMPLES, free_port, fresh_key, install_fake_codex, ticket_body, wait_for
from tests.jira_standin import JiraStandin
from tests.scale_helpers import conductor_process, stop_conductors

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


# Works for 4 s, so a second ticket for the same repository waits in line behind it.
SLOW_CODEX = """#!/bin/sh
sleep 4
echo "changed by the stand-in coding agent" > codex-change.txt
"""


@pytest.mark.timeout(120)
async def test_jira_tickets_have_one_comment_each_edited_through_the_jobs_life(
    client, status_settings, start_conductor, jira, gh, tmp_path, monkeypatch
):
    """Two tickets for one repository (one job at a time): the second's comment shows its place in line."""
    install_fake_codex(tmp_path / "bin", SLOW_CODEX, monkeypatch)
    settings = status_settings.model_copy(update={"coding_agent": "codex"})
    first, second = fresh_key(), fresh_key()
    for key in (first, second):
        jira.add_issue(key)
    await start_conductor(settings)
    intake = SqsIntake(client, settings, None)
    await intake.start_ticket(parse_message(ticket_body(first)))
    await wait_for(lambda: _shows(jira, first, "Status: RUNNING"), timeout=60)
    await intake.start_ticket(parse_message(ticket_body(second)))

    results = [await finished(client, "jira", key) for key in (first, second)]

    for key, result in zip((first, second), results, strict=True):
        assert result.state == JobState.SUCCEEDED and result.pr_url
        [history] = jira.comment_history(key)  # one comment, however many edits
        assert_lived(history, result.pr_url)
        # No marker for people to see: the comment's property names the job, its run and the edit shown.
        assert not any("agent-conductor:" in body for body in history)
        [properties] = jira.comment_properties(key)
        shown = properties["agent-conductor.status"]
        assert shown["job_id"] == f"job/ticket/jira/{key}" and shown["run_id"]
        assert shown["seq"] >= len(history)
    [waited] = jira.comment_history(second)
    assert any(
        "Status: QUEUED (attempt 1), waiting for the repository: number 1 in line." in body for body in waited
    )


async def _shows(jira: JiraStandin, key: str, text: str) -> bool:
    return any(text in comment for comment in jira.comments(key))


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


@pytest.mark.timeout(120)
async def test_one_comment_after_the_conductor_is_sigkilled_mid_post(client, settings, jira, tmp_path):
    """`conductor serve` is SIGKILLed while its first status edit is in Jira's hands: Jira stored the
    comment, the conductor never heard back. Another conductor retries the edit once its try timed out;
    it finds the comment by its marker (the comment property Jira stored with the comment, in the same
    call), and the job's later edits go to it: one comment in the end."""
    key = fresh_key()
    jira.add_issue(key)
    jira.hold_next_comment_reply()
    extra_env = {
        "CONDUCTOR_JIRA_BASE_URL": jira.base_url,
        "CONDUCTOR_JIRA_EMAIL": JIRA_EMAIL,
        "CONDUCTOR_JIRA_API_TOKEN": JIRA_TOKEN,
        "CONDUCTOR_HEARTBEAT_INTERVAL_SECONDS": "1",
    }
    first = conductor_process(settings, free_port(), tmp_path / "conductor-a.log", extra_env)
    second = None
    try:
        await SqsIntake(client, settings, None).start_ticket(parse_message(ticket_body(key)))
        assert await asyncio.to_thread(jira.holding.wait, 60), "no status comment was posted"
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        jira.release_reply()  # to a dead connection
        second = conductor_process(settings, free_port(), tmp_path / "conductor-b.log", extra_env)
        result = await finished(client, "jira", key)
    finally:
        stop_conductors(first, second)

    assert result.state == JobState.SUCCEEDED
    [history] = jira.comment_history(key)
    assert "Status: ACCEPTED" in history[0] and "Status: SUCCEEDED" in history[-1]
    posts = [path for method, path in jira.calls if method == "POST" and path.endswith("/comment")]
    lists = [path for method, path in jira.calls if method == "GET"]
    # Each edit lists the comments once; the retried first edit listed them again, found its comment
    # there, and posted nothing.
    assert len(posts) == 1 and len(lists) == len(history) + 1, (posts, lists, len(history))
    [properties] = jira.comment_properties(key)
    assert properties["agent-conductor.status"]["job_id"] == f"job/ticket/jira/{key}"


@pytest.mark.timeout(120)
async def test_one_github_comment_after_the_conductor_is_sigkilled_mid_post(
    client, status_settings, tmp_path
):
    """As above on a GitHub issue: GitHub stored the comment, the conductor never heard back. The next
    conductor's retry finds the comment by its hidden marker (an HTML comment in the body) and edits it."""
    # A repository of its own: the workflow id `ticket/github/<repo>/<n>` must be new on the session's server.
    repo = f"acme/greeter-{uuid.uuid4().hex[:8]}"
    make_bare_repo_from(EXAMPLES / "sample-repo", tmp_path / "github" / f"{repo}.git")
    # One gateway address for both, as a deployment has: the agent the first launched reports to the second.
    port = free_port()
    first = second = None
    with GithubStandin(token=GH_TOKEN, repos=[repo]) as gh:
        number = gh.add_issue(repo, "Greet in French")
        key = f"{repo}#{number}"
        gh.hold_next_comment_reply()
        extra_env = {
            "CONDUCTOR_GITHUB_API_URL": gh.base_url,
            "CONDUCTOR_GITHUB_TOKEN": GH_TOKEN,
            "CONDUCTOR_GITHUB_CLONE_URL": status_settings.github_clone_url,
            "CONDUCTOR_HEARTBEAT_INTERVAL_SECONDS": "1",
        }
        try:
            first = conductor_process(status_settings, port, tmp_path / "conductor-a.log", extra_env)
            ticket = TicketMessage(source="github", key=key, summary="Greet in French", project=repo)
            assert await SqsIntake(client, status_settings, None).start_ticket(ticket)
            assert await asyncio.to_thread(gh.holding.wait, 60), "no status comment was posted"
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
            gh.release_reply()  # to a dead connection
            second = conductor_process(status_settings, port, tmp_path / "conductor-b.log", extra_env)
            result = await finished(client, "github", key)
        finally:
            stop_conductors(first, second)

        assert result.state == JobState.SUCCEEDED and result.pr_url
        [history] = gh.comment_history(repo, number)
        assert "Status: ACCEPTED" in history[0] and "Status: SUCCEEDED" in history[-1]
        assert len(gh.calls_to("POST", f"/issues/{number}/comments")) == 1
