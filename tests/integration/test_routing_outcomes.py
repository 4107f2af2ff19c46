"""Where a ticket's work goes: no route fails visibly; a github route ends in a pull request."""

import pytest
from pydantic import SecretStr
from temporalio.client import WorkflowFailureError

from contracts.ids import ticket_job_id
from contracts.jobs import JobState
from tests.git_helpers import rev_parse
from tests.github_standin import GithubStandin
from tests.helpers import (
    fresh_key,
    queue_depth,
    sqs_client,
    ticket_body,
    ticket_handle,
    ticket_result,
    wait_for,
)
from tests.job_history import agent_launches, job_ids


async def test_ticket_without_a_route_fails_with_a_readable_reason(client, intake_settings, start_conductor):
    key = fresh_key("OPS")
    await start_conductor(intake_settings)
    sqs_client(intake_settings).send_message(
        QueueUrl=intake_settings.sqs_queue_url,
        MessageBody=ticket_body(key, project={"key": "OPS"}, components=[], labels=["billing"]),
    )
    handle = await ticket_handle(client, key)
    with pytest.raises(WorkflowFailureError) as info:
        await handle.result()
    assert info.value.cause.message == (
        f"no route for ticket {key} (project OPS, components -, labels ['billing']); "
        f"add a rule to {intake_settings.routes_file}"
    )
    # The message was acted on (the failure is on the workflow), so it is not redelivered forever.
    await wait_for(lambda: _queue_empty(intake_settings), timeout=30)
    # No agent was launched: no job of the ticket scheduled a launch (its job id is asked for by name too,
    # in case visibility lags).
    jobs = [*await job_ids(client, f"TicketKey = '{key}'"), ticket_job_id("jira", key)]
    assert await agent_launches(client, jobs) == []


async def test_github_route_pushes_the_branch_and_opens_one_pr(
    client, intake_settings, start_conductor, sample_remote, tmp_path
):
    key = fresh_key()
    with GithubStandin(token="gh-secret", repos=["acme/greeter"]) as standin:
        routes = tmp_path / "github-routes.yaml"
        routes.write_text(
            "tickets:\n  - project: ENG\n    route:\n"
            f"      repo_url: {sample_remote}\n      publisher: github\n"
            "      github_repo: acme/greeter\n      name: acme/greeter\n"
        )
        settings = intake_settings.model_copy(
            update={
                "routes_file": routes,
                "github_api_url": standin.base_url,
                "github_token": SecretStr("gh-secret"),
            }
        )
        await start_conductor(settings)
        sqs_client(settings).send_message(QueueUrl=settings.sqs_queue_url, MessageBody=ticket_body(key))

        result = await ticket_result(client, key)

        assert result.state == JobState.SUCCEEDED
        pulls = standin.pulls("acme/greeter")
        assert len(pulls) == 1
        assert result.pr_url == pulls[0]["html_url"]
        assert pulls[0]["head"]["ref"] == f"conductor/{key}"
        assert pulls[0]["title"] == f"{key}: Login fails after session timeout"
        assert f"https://your-domain.atlassian.net/browse/{key}" in pulls[0]["body"]
        assert rev_parse(sample_remote, f"refs/heads/conductor/{key}") == result.commit_sha


async def _queue_empty(settings) -> bool:
    return queue_depth(settings, settings.sqs_queue_url) == 0
