"""The spine: a Jira ticket on SQS -> exactly one workflow, one agent run, one branch in the remote."""

import json

from contracts.ids import ticket_job_id
from contracts.jobs import JobState
from tests.git_helpers import git
from tests.helpers import (
    count_workflows,
    fresh_key,
    queue_depth,
    sqs_client,
    ticket_body,
    ticket_result,
    wait_for,
)
from tests.job_history import Launch, agent_launches, job_ids


async def launches_for(client, key: str) -> list[Launch]:
    """The agent launches of every job of the ticket, read from the jobs' histories in Temporal."""
    jobs = await job_ids(client, f"TicketKey = '{key}'")
    assert jobs == [ticket_job_id("jira", key)]
    return await agent_launches(client, jobs)


async def test_one_ticket_becomes_one_branch(client, intake_settings, start_conductor, sample_remote):
    key = fresh_key()
    await start_conductor(intake_settings)
    sqs_client(intake_settings).send_message(
        QueueUrl=intake_settings.sqs_queue_url, MessageBody=ticket_body(key)
    )

    result = await ticket_result(client, key)

    assert result.state == JobState.SUCCEEDED
    assert result.branch == f"conductor/{key}"
    assert git("rev-parse", f"refs/heads/conductor/{key}", cwd=sample_remote) == result.commit_sha
    changed = git("diff", "--name-only", "main", f"conductor/{key}", cwd=sample_remote).split()
    assert sorted(changed) == ["CHANGELOG.md", f"docs/tickets/{key}.md"]
    changelog = git("show", f"conductor/{key}:CHANGELOG.md", cwd=sample_remote)
    assert f"{key}: Login fails after session timeout" in changelog
    (launch,) = await launches_for(client, key)
    assert launch.attempt == 1 and launch.agent_id
    query = f"WorkflowType = 'TicketWorkflow' AND TicketKey = '{key}'"
    assert await wait_for(lambda: count_workflows(client, query)) == 1
    assert await wait_for(lambda: _is_empty(intake_settings), timeout=30)


async def test_duplicates_make_one_job(client, intake_settings, start_conductor, sample_remote):
    """The same ticket 3 times plus a webhook envelope of it: one workflow, one agent, one branch."""
    key = fresh_key()
    queue = intake_settings.sqs_queue_url
    body = ticket_body(key)
    envelope = json.dumps({"webhookEvent": "jira:issue_updated", "issue": json.loads(body)})
    for message in (body, body, body, envelope):
        sqs_client(intake_settings).send_message(QueueUrl=queue, MessageBody=message)
    await start_conductor(intake_settings)

    result = await ticket_result(client, key)
    # Redelivery after the job finished: rejected by the reuse policy, deleted, no second run.
    sqs_client(intake_settings).send_message(QueueUrl=queue, MessageBody=body)
    await wait_for(lambda: _is_empty(intake_settings), timeout=30)

    assert result.state == JobState.SUCCEEDED
    (launch,) = await launches_for(client, key)
    assert launch.attempt == 1 and launch.agent_id
    assert await count_workflows(client, f"WorkflowId = 'ticket/jira/{key}'") == 1
    branches = git("for-each-ref", "--format=%(refname)", "refs/heads/conductor/", cwd=sample_remote)
    assert branches.split() == [f"refs/heads/conductor/{key}"]


async def _is_empty(settings) -> bool:
    return queue_depth(settings, settings.sqs_queue_url) == 0
