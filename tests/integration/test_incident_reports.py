"""A failed incident job is reported in one GitHub issue per chain; a later alarm updates that issue.

Real conductor (in this process), real dev server, real agent subprocess and git (the route's remote does
not exist, so the agent fails for real); GitHub's REST API is the stand-in in tests/.
"""

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr
from temporalio.client import WorkflowFailureError
from temporalio.service import RPCError

from activities.incident_report import INCIDENT_LABEL
from conductor_worker.intake.sqs import SqsIntake
from contracts.alarms import Alarm, AlarmState
from contracts.operator import RetryRequest
from contracts.policies import JobPolicy
from contracts.status import incident_marker
from tests.github_standin import GithubStandin
from tests.helpers import wait_for
from tests.scale_helpers import new_accounts
from workflows.agent_job import AgentJobWorkflow
from workflows.chaining import chain_id_for

REPO = "acme/ops"


def alarm(account: str, name: str, at: datetime) -> Alarm:
    return Alarm(
        account=account,
        region="eu-west-1",
        alarm_name=name,
        state=AlarmState.ALARM,
        reason=f"{name} crossed its threshold",
        event_time=at,
    )


@pytest.fixture
def gh():
    with GithubStandin(token="gh-token", repos=[REPO]) as standin:
        yield standin


@pytest.fixture
def account() -> str:
    [account] = new_accounts(1)
    return account


@pytest.fixture
def report_settings(settings, gh, account, tmp_path: Path):
    """The account's incidents go to a remote that does not exist (the agent fails), reported in REPO."""
    routes = tmp_path / "incident-routes.yaml"
    routes.write_text(
        f'accounts:\n  - account: "{account}"\n    route:\n'
        f"      {{repo_url: {tmp_path / 'missing.git'}, publisher: github, github_repo: {REPO}, name: ops}}\n"
    )
    return settings.model_copy(
        update={
            "routes_file": routes,
            "github_api_url": gh.base_url,
            "github_token": SecretStr("gh-token"),
            # The chain idles out a few minutes after the test instead of a day.
            "chain_window_seconds": 60,
            "chain_max_age_seconds": 120,
        }
    )


def reports(gh: GithubStandin, job_id: str) -> list[dict]:
    return [issue for issue in gh.issues(REPO) if incident_marker(job_id) in issue["body"]]


async def reported(gh: GithubStandin, job_id: str, text: str):
    found = reports(gh, job_id)
    return found if found and text in found[0]["body"] else None


@pytest.mark.timeout(90)
async def test_a_failed_incident_job_opens_one_issue_that_later_alarms_update(
    client, report_settings, start_conductor, gh, account
):
    settings = report_settings
    await start_conductor(settings)
    intake = SqsIntake(client, settings, None)
    started = datetime.now(UTC).replace(microsecond=0)
    await intake.deliver_alarm(alarm(account, "disk-full", started))

    job_id = chain_id_for(account, started)  # a chain's first job has the chain's id
    job = await wait_for(lambda: _started(client, job_id), timeout=60)
    with pytest.raises(WorkflowFailureError) as failed:
        await asyncio.wait_for(job.result(), 60)
    assert "FAILED" in str(failed.value.cause)

    [issue] = await wait_for(lambda: reported(gh, job_id, "- count: 1"), timeout=30)
    assert f"## Job `{job_id}`: FAILED (attempt 1)" in issue["body"]
    assert "Reason: agent reported" in issue["body"], issue["body"]
    assert "Agent's report:" in issue["body"]
    assert "`disk-full`" in issue["body"] and f"- first: {started.isoformat()}" in issue["body"]
    assert [label["name"] for label in issue["labels"]] == [INCIDENT_LABEL]

    await intake.deliver_alarm(alarm(account, "api-5xx", started + timedelta(seconds=30)))

    [updated] = await wait_for(lambda: reported(gh, job_id, "- count: 2"), timeout=30)
    assert updated["number"] == issue["number"] and len(gh.issues(REPO)) == 1, "a second issue was opened"
    assert "`api-5xx`, `disk-full`" in updated["body"]
    assert f"- last: {(started + timedelta(seconds=30)).isoformat()}" in updated["body"]
    assert f"## Job `{job_id}`: FAILED" in updated["body"], "the job's outcome was lost in the update"


@pytest.mark.timeout(90)
async def test_each_attempt_of_the_job_rewrites_the_report(
    client, report_settings, start_conductor, gh, account
):
    # The failed job waits for an operator's `retry`.
    settings = report_settings.model_copy(update={"incident_policy": JobPolicy(retry_window_seconds=60)})
    await start_conductor(settings)
    started = datetime.now(UTC).replace(microsecond=0)
    await SqsIntake(client, settings, None).deliver_alarm(alarm(account, "disk-full", started))
    job_id = chain_id_for(account, started)
    job = await wait_for(lambda: _started(client, job_id), timeout=60)
    [issue] = await wait_for(lambda: reported(gh, job_id, "FAILED (attempt 1)"), timeout=60)

    await job.signal(AgentJobWorkflow.retry, RetryRequest(by="oncall"))

    [updated] = await wait_for(lambda: reported(gh, job_id, "FAILED (attempt 2)"), timeout=60)
    assert updated["number"] == issue["number"] and len(gh.issues(REPO)) == 1
    assert "FAILED (attempt 1)" not in updated["body"], "the report shows the job's latest attempt"
    await job.terminate("test over")


async def _started(client, workflow_id: str):
    handle = client.get_workflow_handle(workflow_id)
    try:
        await handle.describe()
    except RPCError:
        return None
    return handle
