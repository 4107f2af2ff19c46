"""The spine: a Jira ticket on SQS -> exactly one workflow, one agent run, one branch in the remote."""

import asyncio
import json
import random
from pathlib import Path

import boto3
from temporalio.client import Client

from contracts.jobs import JobResult, JobState
from tests.conftest import EXAMPLES
from tests.git_helpers import git
from tests.helpers import wait_for


def ticket_body(key: str) -> str:
    """The fixture ticket under a fresh key: the dev server outlives each test, ids must not collide."""
    issue = json.loads((EXAMPLES / "tickets" / "ENG-123.json").read_text())
    issue["key"] = key
    return json.dumps(issue)


def fresh_key() -> str:
    return f"ENG-{random.randrange(10**6, 10**7)}"


def sqs(settings):
    return boto3.client("sqs", endpoint_url=settings.aws_endpoint_url, region_name="us-east-1")


async def ticket_result(client: Client, key: str) -> JobResult:
    handle = client.get_workflow_handle(f"ticket/jira/{key}", result_type=JobResult)
    await wait_for(lambda: _exists(client, f"ticket/jira/{key}"), timeout=60)
    return await asyncio.wait_for(handle.result(), timeout=120)


async def _exists(client: Client, workflow_id: str) -> bool:
    try:
        await client.get_workflow_handle(workflow_id).describe()
        return True
    except Exception:
        return False


async def count_workflows(client: Client, query: str) -> int:
    return (await client.count_workflows(query)).count


def agent_launches(state_dir: Path) -> list[Path]:
    return sorted(state_dir.glob("jobs/*/attempt-*/agent.json"))


async def test_one_ticket_becomes_one_branch(client, intake_settings, start_conductor, sample_remote):
    key = fresh_key()
    await start_conductor(intake_settings)
    sqs(intake_settings).send_message(QueueUrl=intake_settings.sqs_queue_url, MessageBody=ticket_body(key))

    result = await ticket_result(client, key)

    assert result.state == JobState.SUCCEEDED
    assert result.branch == f"conductor/{key}"
    assert git("rev-parse", f"refs/heads/conductor/{key}", cwd=sample_remote) == result.commit_sha
    changed = git("diff", "--name-only", "main", f"conductor/{key}", cwd=sample_remote).split()
    assert sorted(changed) == ["CHANGELOG.md", f"docs/tickets/{key}.md"]
    assert f"{key}: Login fails after session timeout" in git(
        "show", f"conductor/{key}:CHANGELOG.md", cwd=sample_remote
    )
    assert len(agent_launches(intake_settings.state_dir)) == 1
    assert (
        await wait_for(
            lambda: count_workflows(client, f"WorkflowType = 'TicketWorkflow' AND TicketKey = '{key}'")
        )
        == 1
    )


async def test_duplicates_make_one_job(client, intake_settings, start_conductor, sample_remote):
    """The same ticket 3 times plus a webhook envelope of it: one workflow, one agent, one branch."""
    key = fresh_key()
    queue = intake_settings.sqs_queue_url
    body = ticket_body(key)
    envelope = json.dumps({"webhookEvent": "jira:issue_updated", "issue": json.loads(body)})
    for message in (body, body, body, envelope):
        sqs(intake_settings).send_message(QueueUrl=queue, MessageBody=message)
    await start_conductor(intake_settings)

    result = await ticket_result(client, key)
    # Redelivery after the job finished: rejected by the reuse policy, deleted, no second run.
    sqs(intake_settings).send_message(QueueUrl=queue, MessageBody=body)
    await wait_for(lambda: _queue_empty(intake_settings), timeout=30)

    assert result.state == JobState.SUCCEEDED
    assert len(agent_launches(intake_settings.state_dir)) == 1
    runs = await count_workflows(client, f"WorkflowId = 'ticket/jira/{key}'")
    assert runs == 1
    branches = git("for-each-ref", "--format=%(refname)", "refs/heads/conductor/", cwd=sample_remote)
    assert branches.split() == [f"refs/heads/conductor/{key}"]


async def _queue_empty(settings) -> bool:
    attrs = sqs(settings).get_queue_attributes(
        QueueUrl=settings.sqs_queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return (
        attrs["ApproximateNumberOfMessages"] == "0" and attrs["ApproximateNumberOfMessagesNotVisible"] == "0"
    )
