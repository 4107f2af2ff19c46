"""Searchable jobs: a ticket job and an incident job, found again by a visibility query on each attribute."""

import asyncio
import subprocess
import sys
import uuid
from datetime import UTC, datetime

import pytest
from temporalio.client import Client

from conductor_worker.process.devserver import temporal_executable
from contracts.ids import account_workflow_id, incident_key, ticket_job_id, ticket_workflow_id
from contracts.jobs import JobState
from tests.helpers import fresh_key, incident_job_result, sqs_client, ticket_body, ticket_result, wait_for
from tests.scale_helpers import alarm_body, new_accounts


async def workflow_ids(client: Client, query: str) -> set[str]:
    return {execution.id async for execution in client.list_workflows(query)}


async def listed(client: Client, query: str, expected: set[str]) -> set[str]:
    """The ids the query lists, once they are the expected ones (visibility is written after the upsert)."""
    found: set[str] = set()

    async def probe() -> bool:
        nonlocal found
        found = await workflow_ids(client, query)
        return found == expected

    try:
        await wait_for(probe, timeout=20)
    except TimeoutError:
        pass  # the assertion below shows what came back instead
    return found


@pytest.fixture
def visibility_settings(intake_settings, tmp_path, sample_remote):
    """Tickets and every account go to one route whose name no other test uses, so `Repository` is exact."""
    repository = f"visibility/{uuid.uuid4().hex[:8]}"
    routes = tmp_path / "visibility-routes.yaml"
    routes.write_text(
        f"tickets:\n  - route: {{repo_url: {sample_remote}, name: {repository}, max_concurrent_jobs: 50}}\n"
        f'accounts:\n  - account: "*"\n    route: {{repo_url: {sample_remote}, name: {repository}, max_concurrent_jobs: 50}}\n'
    )
    return intake_settings.model_copy(update={"routes_file": routes}), repository


@pytest.mark.timeout(240)
async def test_each_search_attribute_finds_its_jobs(client, visibility_settings, start_conductor):
    settings, repository = visibility_settings
    key, (account,) = fresh_key(), new_accounts(1)
    await start_conductor(settings)
    sqs = sqs_client(settings)
    sqs.send_message(QueueUrl=settings.sqs_queue_url, MessageBody=ticket_body(key))
    sqs.send_message(
        QueueUrl=settings.sqs_queue_url, MessageBody=alarm_body(account, datetime.now(UTC), "api-5xx")
    )

    ticket, ticket_job = ticket_workflow_id("jira", key), ticket_job_id("jira", key)
    ticket_done = await ticket_result(client, key)
    incident_job, incident_done = await incident_job_result(client, account)
    assert (ticket_done.state, incident_done.state) == (JobState.SUCCEEDED, JobState.SUCCEEDED)
    chain = account_workflow_id(account)
    ours = f"(TicketKey = '{key}' OR AwsAccount = '{account}')"
    incident = incident_key(incident_job)  # a chain's first job has the chain's id
    both_keys = f"TicketKey IN ('{key}', '{incident}')"

    expectations = {
        f"ConductorJobKind = 'ticket' AND {ours}": {ticket, ticket_job},
        f"ConductorJobKind = 'incident' AND {ours}": {incident_job},
        f"ConductorJobKind = 'alarms' AND {ours}": {chain},
        f"TicketKey = '{key}'": {ticket, ticket_job},
        f"TicketKey = '{incident}'": {incident_job},
        f"AwsAccount = '{account}'": {chain, incident_job},
        f"Repository = '{repository}'": {ticket_job, incident_job},
        f"JobState = 'SUCCEEDED' AND {both_keys}": {ticket_job, incident_job},
        f"JobState = 'FAILED' AND {ours}": set(),
    }
    found = {query: await listed(client, query, ids) for query, ids in expectations.items()}
    assert found == expectations


async def test_register_command_on_a_cluster_that_has_them(client):
    """The production command, run as a person runs it, against a server started with the attributes."""
    address = client.service_client.config.target_host
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "conductor_worker", "search-attributes", "register", "--address", address],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    for name in ("ConductorJobKind", "TicketKey", "AwsAccount", "Repository", "JobState"):
        assert f"already present  {name} (Keyword)" in done.stdout


@pytest.mark.timeout(180)
async def test_temporal_cli_lists_a_ticket_by_key(client, intake_settings, start_conductor):
    key = fresh_key()
    await start_conductor(intake_settings)
    sqs_client(intake_settings).send_message(
        QueueUrl=intake_settings.sqs_queue_url, MessageBody=ticket_body(key)
    )
    await ticket_result(client, key)
    expected = {ticket_workflow_id("jira", key), ticket_job_id("jira", key)}
    await listed(client, f"TicketKey = '{key}'", expected)  # visibility has caught up

    done = await asyncio.to_thread(
        subprocess.run,
        [
            temporal_executable(),
            "workflow",
            "list",
            "--query",
            f"TicketKey = '{key}'",
            "--address",
            client.service_client.config.target_host,
            "--namespace",
            client.namespace,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines()[1:] if line.strip()]
    assert {row[1] for row in rows} == expected, done.stdout
