"""Scheduling on real parts at the issue's scale: dev server, moto SQS, git, real agent subprocesses."""

import os
import random
import signal
import time
from datetime import timedelta

import pytest

from contracts.ids import account_workflow_id
from tests.git_helpers import git
from tests.helpers import count_workflows, free_port, queue_depth, ticket_body, wait_for
from tests.job_history import agent_launches, job_ids
from tests.scale_helpers import (
    conductor_process,
    new_accounts,
    scale_settings,
    send_all,
    stop_conductors,
    storm,
)
from workflows.incident_chain import IncidentChainWorkflow


async def launches(client, *queries: str) -> list[str]:
    """The job of each agent launch (completed: its agent id is known) of the jobs the visibility queries
    find, read from the jobs' histories in Temporal: a job launched twice is in it twice."""
    jobs = [job for query in queries for job in await job_ids(client, query)]
    found = await agent_launches(client, jobs)
    assert all(launch.agent_id for launch in found), [launch for launch in found if not launch.agent_id]
    return sorted(launch.job_id for launch in found)


async def finished_jobs(client, query: str, expected: int) -> int:
    done = await count_workflows(
        client, f"WorkflowType = 'AgentJobWorkflow' AND {query} AND ExecutionStatus != 'Running'"
    )
    return done if done >= expected else 0


@pytest.mark.timeout(300)
async def test_100_alarms_across_10_accounts_make_10_jobs(
    client, intake_settings, start_conductor, tmp_path, sample_remote
):
    settings = scale_settings(intake_settings, tmp_path, sample_remote)
    accounts = new_accounts(10)
    bodies = storm(accounts)
    random.shuffle(bodies)
    await start_conductor(settings)
    send_all(settings, bodies)

    in_accounts = "AwsAccount IN (" + ", ".join(f"'{a}'" for a in accounts) + ")"
    assert await wait_for(lambda: finished_jobs(client, in_accounts, 10), timeout=240) == 10
    for account in accounts:
        status = await client.get_workflow_handle(account_workflow_id(account)).query(
            IncidentChainWorkflow.status
        )
        assert [(c.alarm_count, c.jobs_started) for c in status.chains.chains] == [(10, 1)]
    jobs = await launches(client, in_accounts)
    assert len(jobs) == 10 and len(set(jobs)) == 10  # one agent launch per job, none twice
    assert (
        await count_workflows(
            client, f"WorkflowType = 'AgentJobWorkflow' AND {in_accounts} AND ExecutionStatus = 'Completed'"
        )
        == 10
    )
    branches = git(
        "for-each-ref", "--format=%(refname:short)", "refs/heads/conductor/", cwd=sample_remote
    ).split()
    assert sorted(b.split("-")[1] for b in branches) == sorted(accounts)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("kill", [False, True], ids=["uninterrupted", "kill-9-half-way"])
async def test_600_tickets_for_200_keys_and_100_alarms_make_210_jobs(
    client, intake_settings, tmp_path, sample_remote, kill
):
    """600 ticket messages for 200 keys and 100 alarms for 10 accounts, shuffled; optionally SIGKILL mid-way."""
    settings = scale_settings(intake_settings, tmp_path, sample_remote)
    prefix = f"K{random.randrange(100, 999)}"
    tickets = [ticket_body(f"{prefix}-{k}") for k in range(1, 201) for _ in range(3)]
    accounts = new_accounts(10)
    bodies = tickets + storm(accounts)
    random.shuffle(bodies)
    send_all(settings, bodies)
    port, log = free_port(), tmp_path / "conductor.log"
    ticket_jobs = f"WorkflowType = 'AgentJobWorkflow' AND TicketKey STARTS_WITH '{prefix}-'"

    first = second = conductor_process(settings, port, log)
    try:
        if kill:
            await wait_for(lambda: _at_least(client, ticket_jobs, 100), timeout=300)
            os.killpg(first.pid, signal.SIGKILL)  # the conductor alone: agents run in sessions of their own
            first.wait()
            second = conductor_process(settings, port, log)
        in_accounts = "AwsAccount IN (" + ", ".join(f"'{a}'" for a in accounts) + ")"
        assert (
            await wait_for(
                lambda: finished_jobs(client, f"TicketKey STARTS_WITH '{prefix}-'", 200), timeout=600
            )
            == 200
        )
        assert await wait_for(lambda: finished_jobs(client, in_accounts, 10), timeout=120) == 10
    finally:
        stop_conductors(first, second)

    not_completed = await not_completed_jobs(client, ticket_jobs)
    assert not_completed == [], "\n".join(not_completed) + "\n" + log.read_text()[-3000:]
    assert (
        await count_workflows(
            client, f"WorkflowType = 'TicketWorkflow' AND TicketKey STARTS_WITH '{prefix}-'"
        )
        == 200
    )
    read_from = time.monotonic()
    jobs = await launches(client, f"TicketKey STARTS_WITH '{prefix}-'", in_accounts)
    print(f"\n{len(jobs)} jobs' launches read from their histories in {time.monotonic() - read_from:.1f} s")
    assert len(jobs) == 210 and len(set(jobs)) == 210  # one agent launch per job, none twice
    branches = git(
        "for-each-ref", "--format=%(refname:short)", "refs/heads/conductor/", cwd=sample_remote
    ).split()
    assert len([b for b in branches if b.startswith(f"conductor/{prefix}-")]) == 200
    assert len([b for b in branches if b.startswith("conductor/incident-")]) == 10
    assert queue_depth(settings, settings.sqs_queue_url) == 0


async def not_completed_jobs(client, query: str) -> list[str]:
    """Each job that did not complete, with its status and failure: what a failing run needs to show."""
    lines = []
    async for wf in client.list_workflows(f"{query} AND ExecutionStatus != 'Completed'"):
        try:
            await client.get_workflow_handle(wf.id, run_id=wf.run_id).result(rpc_timeout=timedelta(seconds=5))
            outcome = "completed by now (visibility lagged)"
        except Exception as err:
            outcome = f"{type(err).__name__}: {err} / {getattr(err, 'cause', None)}"
        lines.append(f"{wf.id} {wf.status.name if wf.status else '?'}: {outcome}")
    return lines


async def _at_least(client, query: str, n: int) -> bool:
    return await count_workflows(client, query) >= n
