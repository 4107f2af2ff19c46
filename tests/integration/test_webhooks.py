"""Webhook intake: signed GitHub `issues` events and Jira issue events become jobs, exactly once.

Real conductor (in this process), real dev server, real git; GitHub's REST API is the stand-in in tests/.
Payloads are GitHub's documented `issues` event shape and Jira's webhook envelope; each is signed as the
sender signs it (HMAC-SHA256 of the raw body, hex, `sha256=` prefix).
"""

import json
import random
import uuid
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from contracts.ids import ticket_job_id, ticket_workflow_id
from contracts.jobs import JobResult, JobState
from contracts.policies import JobPolicy
from tests.git_helpers import make_bare_repo_from, rev_parse
from tests.github_standin import GithubStandin
from tests.github_webhooks import REPO, issues_event, sign
from tests.helpers import EXAMPLES, free_port, fresh_key, install_fake_codex, ticket_body, wait_for
from workflows.agent_job import AgentJobWorkflow

GITHUB_SECRET = "gh-webhook-secret"
JIRA_SECRET = "jira-webhook-secret"
# Works long on its first attempt only, so there is a running job to cancel.
SLOW_CODEX = """#!/bin/sh
sleep 120
echo "changed" > codex-change.txt
"""


async def post_github(
    base: str, body: bytes, event: str = "issues", delivery: str | None = None, secret=GITHUB_SECRET
):
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-Hub-Signature-256": sign(secret, body),
    }
    # Async: the conductor runs on this test's event loop.
    async with httpx.AsyncClient() as http:
        return await http.post(f"{base}/webhooks/github", content=body, headers=headers, timeout=30)


async def post(url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.post(url, content=body, headers=headers, timeout=30)


@pytest.fixture
def github():
    with GithubStandin(token="gh-token", repos=[REPO]) as standin:
        yield standin


@pytest.fixture
def webhook_settings(settings, github, tmp_path: Path):
    # A GitHub issue with no rule of its own goes to its repository: here a bare repo at the clone URL.
    make_bare_repo_from(EXAMPLES / "sample-repo", tmp_path / "github" / f"{REPO}.git")
    return settings.model_copy(
        update={
            "rest_listen": f"127.0.0.1:{free_port()}",
            "github_webhook_secret": SecretStr(GITHUB_SECRET),
            "jira_webhook_secret": SecretStr(JIRA_SECRET),
            "github_clone_url": str(tmp_path / "github" / "{repo}.git"),
            "github_api_url": github.base_url,
            "github_token": SecretStr("gh-token"),
        }
    )


def base_url(settings) -> str:
    return f"http://{settings.rest_listen}"


async def served(settings) -> None:
    async def up() -> bool:
        try:
            async with httpx.AsyncClient() as http:
                await http.get(f"{base_url(settings)}/openapi.json", timeout=2)
            return True
        except httpx.HTTPError:
            return False

    await wait_for(up, timeout=30)


@pytest.mark.timeout(180)
async def test_a_labelled_issue_delivered_three_times_makes_one_job_and_a_pr_that_fixes_it(
    client, webhook_settings, start_conductor, github, tmp_path
):
    settings = webhook_settings
    await start_conductor(settings)
    await served(settings)
    number = random.randrange(10**5, 10**6)
    key = f"{REPO}#{number}"
    body = issues_event("labeled", number)

    # A bad signature is refused before anything is read; nothing starts.
    refused = await post_github(base_url(settings), body, secret="not-the-secret")
    assert refused.status_code == 401 and "signature" in refused.json()["detail"]
    # Events of no interest are acknowledged and ignored; a malformed one is 400 with its reason.
    assert (await post_github(base_url(settings), b'{"zen": "hi"}', event="push")).status_code == 202
    assert (
        await post_github(base_url(settings), issues_event("labeled", number, label="bug"))
    ).status_code == 202
    malformed = await post_github(base_url(settings), b'{"action": "labeled"}')
    assert malformed.status_code == 400 and "issue" in malformed.json()["detail"]
    assert await _absent(client, ticket_workflow_id("github", key))

    # GitHub's redelivery keeps the delivery id: the three make one ticket workflow and one job.
    delivery = str(uuid.uuid4())
    answers = [await post_github(base_url(settings), body, delivery=delivery) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200], [a.text for a in answers]
    assert answers[0].json() == {"ticket": key, "outcome": "started"}
    assert [a.json()["outcome"] for a in answers[1:]] == ["already running"] * 2

    handle = client.get_workflow_handle(ticket_workflow_id("github", key), result_type=JobResult)
    result = await handle.result()
    assert result.state == JobState.SUCCEEDED
    pulls = github.pulls(REPO)
    assert len(pulls) == 1
    assert pulls[0]["head"]["ref"] == f"conductor/{REPO}-{number}"
    assert f"Fixes #{number}" in pulls[0]["body"]
    assert f"Ticket: [{key}](https://github.com/{REPO}/issues/{number})" in pulls[0]["body"]
    assert rev_parse(tmp_path / "github" / f"{REPO}.git", f"refs/heads/conductor/{REPO}-{number}")
    # Delivered again after the job ended: the same workflow id, nothing redone.
    again = await post_github(base_url(settings), body, delivery=delivery)
    assert again.json()["outcome"] == "already handled"
    assert len(github.pulls(REPO)) == 1


@pytest.mark.timeout(180)
async def test_removing_the_label_cancels_the_running_job(
    client, webhook_settings, start_conductor, tmp_path, monkeypatch
):
    install_fake_codex(tmp_path / "bin", SLOW_CODEX, monkeypatch)
    settings = webhook_settings.model_copy(
        update={"coding_agent": "codex", "ticket_policy": JobPolicy(retry_window_seconds=0)}
    )
    await start_conductor(settings)
    await served(settings)
    number = random.randrange(10**5, 10**6)
    key = f"{REPO}#{number}"
    assert (await post_github(base_url(settings), issues_event("labeled", number))).status_code == 200
    job = client.get_workflow_handle(ticket_job_id("github", key))

    async def running():
        try:
            status = await job.query(AgentJobWorkflow.status)
        except Exception:  # not started yet
            return None
        return status if status.state == JobState.RUNNING and status.agent_id else None

    await wait_for(running, timeout=60)
    unlabel = await post_github(base_url(settings), issues_event("unlabeled", number, labels=()))
    assert unlabel.status_code == 200 and unlabel.json()["outcome"] == "cancel requested"

    async def cancelled():
        status = await job.query(AgentJobWorkflow.status)
        return status if status.state == JobState.CANCELLED else None

    status = await wait_for(cancelled, timeout=60)
    assert status.reason == "cancelled by github: label 'agent' removed"
    # Nothing left to cancel: acknowledged, ignored.
    other = await post_github(base_url(settings), issues_event("closed", number + 1))
    assert other.status_code == 202 and "no running job" in other.json()["reason"]


@pytest.mark.timeout(180)
async def test_a_signed_jira_webhook_makes_one_job_and_a_bad_signature_none(
    client, webhook_settings, start_conductor
):
    settings = webhook_settings
    await start_conductor(settings)
    await served(settings)
    key = fresh_key()
    envelope = {"webhookEvent": "jira:issue_created", "issue": json.loads(ticket_body(key))}
    body = json.dumps(envelope).encode()
    url = f"{base_url(settings)}/webhooks/jira"

    bad = await post(url, body, {"X-Hub-Signature": sign("wrong", body)})
    assert bad.status_code == 401
    assert await _absent(client, ticket_workflow_id("jira", key))
    headers = {"X-Hub-Signature": sign(JIRA_SECRET, body), "X-Atlassian-Webhook-Identifier": "1"}
    assert [(await post(url, body, headers)).status_code for _ in range(2)] == [
        200,
        200,
    ]
    result = await client.get_workflow_handle(ticket_workflow_id("jira", key), result_type=JobResult).result()
    assert result.state == JobState.SUCCEEDED and result.branch == f"conductor/{key}"


async def _absent(client, workflow_id: str) -> bool:
    try:
        await client.get_workflow_handle(workflow_id).describe()
    except Exception:
        return True
    return False


@pytest.mark.timeout(120)
async def test_with_the_signature_check_off_a_forged_delivery_starts_a_job(
    client, webhook_settings, start_conductor, monkeypatch
):
    """The 401 above is the check's doing: with it off, the same forged delivery makes a job."""
    import conductor_worker.intake.webhooks

    monkeypatch.setattr(conductor_worker.intake.webhooks, "signature_matches", lambda *args: True)
    settings = webhook_settings
    await start_conductor(settings)
    await served(settings)
    number = random.randrange(10**5, 10**6)
    forged = await post_github(base_url(settings), issues_event("labeled", number), secret="not-the-secret")
    assert forged.status_code == 200 and forged.json()["outcome"] == "started"
    assert not await _absent(client, ticket_workflow_id("github", f"{REPO}#{number}"))
