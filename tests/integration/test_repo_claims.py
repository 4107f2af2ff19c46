"""Repository claims: one job at a time per repository, FIFO, positions reported, released on every exit."""

import asyncio
import os
import signal
from pathlib import Path

import pytest
from temporalio.client import WorkflowFailureError

from contracts.claims import RepoClaimState, claim_workflow_id
from contracts.ids import safe_name, ticket_job_id
from contracts.jobs import JobState
from contracts.policies import JobPolicy
from tests.helpers import fresh_key, install_fake_codex, is_running, ticket_result, wait_for
from tests.integration.test_agent_relaunch import agent_pid, launch, start_ticket
from tests.integration.test_operator_commands import address
from tests.operator_cli import cli_model, query_result, run_readme_command
from workflows.agent_job import AgentJobWorkflow
from workflows.repo_claim import RepoClaimWorkflow

# Each run logs its start and end (epoch seconds) in its work directory, the one place a sandboxed agent
# writes that the test can read, so the test can check that runs never overlap. In `fail` and `slow` mode
# the first job's first attempt misbehaves (fails, or sleeps and marks it started); every other run works
# for 1 s.
CODEX = """#!/bin/sh
echo "start $(basename "$PWD") $(date +%s.%N)" >> "$HOME/runs.log"
case "$HOME" in
  *_{first_key}/attempt-1/*)
    if [ "{mode}" = "fail" ]; then echo "first run fails" >&2; exit 3; fi
    if [ "{mode}" = "slow" ]; then touch "$HOME/first-run"; sleep 60; fi ;;
esac
sleep 1
echo "changed by the stand-in coding agent" > codex-change.txt
echo "end $(basename "$PWD") $(date +%s.%N)" >> "$HOME/runs.log"
"""


def install_codex(tmp_path: Path, monkeypatch, mode: str, first_key: str = "") -> None:
    install_fake_codex(tmp_path / "bin", CODEX.format(mode=mode, first_key=first_key), monkeypatch)


def run_log(settings) -> list[list[str]]:
    """Every run's start and end lines, from every job's work directories."""
    logs = sorted(settings.jobs_dir.glob("*/attempt-*/workdir-*/**/runs.log"))
    return [line.split() for log in logs for line in log.read_text().splitlines()]


@pytest.fixture
def one_at_a_time(settings, tmp_path, sample_remote):
    """The sample repository with the default claim: one job at a time."""
    routes = tmp_path / "claim-routes.yaml"
    routes.write_text(f"tickets:\n  - route: {{repo_url: {sample_remote}, name: greeter}}\n")
    return settings.model_copy(update={"routes_file": routes, "coding_agent": "codex"})


async def claim_state(client, repo: Path) -> RepoClaimState:
    return await client.get_workflow_handle(claim_workflow_id(str(repo))).query(RepoClaimWorkflow.queue)


async def job_state(client, key: str) -> JobState | None:
    try:
        status = await client.get_workflow_handle(ticket_job_id("jira", key)).query(AgentJobWorkflow.status)
    except Exception:  # not started yet
        return None
    return status.state


@pytest.mark.timeout(240)
async def test_six_jobs_on_one_repository_run_one_at_a_time_in_order(
    client, env, one_at_a_time, start_conductor, sample_remote, tmp_path, monkeypatch
):
    install_codex(tmp_path, monkeypatch, mode="none")
    await start_conductor(one_at_a_time)
    keys = [fresh_key() for _ in range(6)]
    jobs = [ticket_job_id("jira", key) for key in keys]
    for key in keys:
        await start_ticket(client, one_at_a_time, key)

    async def line_of_five():
        try:
            state = await claim_state(client, sample_remote)
        except Exception:
            return None
        return state if len(state.holders) == 1 and len(state.waiting) == 5 else None

    state = await wait_for(line_of_five, timeout=60)
    claim = claim_workflow_id(str(sample_remote))
    for place, job_id in enumerate(state.waiting, start=1):
        output = await run_readme_command(r"--type position", address(env), job_id=job_id, claim_id=claim)
        assert query_result(output) == place
        assert await job_state(client, keys[jobs.index(job_id)]) == JobState.QUEUED
    readme_queue = cli_model(
        RepoClaimState, await run_readme_command(r"--type queue", address(env), claim_id=claim)
    )
    assert readme_queue.holders == state.holders and readme_queue.waiting == state.waiting
    expected_order = state.holders + state.waiting

    results = await asyncio.gather(*(ticket_result(client, key) for key in keys))
    assert all(result.state == JobState.SUCCEEDED for result in results)
    runs = run_log(one_at_a_time)
    starts = [(float(at), workdir) for kind, workdir, at in runs if kind == "start"]
    ends = sorted(float(at) for kind, _, at in runs if kind == "end")
    assert len(starts) == len(ends) == 6
    starts.sort()
    for (started, _), ended_before in zip(starts[1:], ends[:-1], strict=True):
        assert started >= ended_before, "two agents worked on the repository at once"
    history_order = [await _running_since(client, job_id) for job_id in expected_order]
    assert history_order == sorted(history_order), "the claim was not granted first come, first served"
    assert (await claim_state(client, sample_remote)).holders == []


async def _running_since(client, job_id: str) -> str:
    status = await client.get_workflow_handle(job_id).query(AgentJobWorkflow.status)
    return next(line.split()[0] for line in status.history if line.endswith(" RUNNING"))


@pytest.mark.timeout(180)
@pytest.mark.parametrize("exit_path", ["failure", "crash", "timeout", "cancel"])
async def test_the_claim_is_released_when_a_job_ends_badly(
    client, one_at_a_time, start_conductor, sample_remote, tmp_path, monkeypatch, exit_path
):
    first, second = fresh_key(), fresh_key()
    install_codex(tmp_path, monkeypatch, mode="fail" if exit_path == "failure" else "slow", first_key=first)
    policy = {
        "crash": JobPolicy(retry_window_seconds=0, max_agent_attempts=1),
        "timeout": JobPolicy(retry_window_seconds=0, agent_timeout_seconds=8),
    }.get(exit_path, JobPolicy(retry_window_seconds=0))
    settings = one_at_a_time.model_copy(update={"ticket_policy": policy})
    await start_conductor(settings)
    await start_ticket(client, settings, first)
    await wait_for(lambda: _in_state(client, first, JobState.RUNNING), timeout=60)
    await start_ticket(client, settings, second)
    await wait_for(lambda: _in_state(client, second, JobState.QUEUED), timeout=60)

    async def second_in_line() -> bool:
        # QUEUED is set as the job asks; its request reaches the claim a moment later.
        return (await claim_state(client, sample_remote)).position(ticket_job_id("jira", second)) == 1

    await wait_for(second_in_line, timeout=30)

    first_job = client.get_workflow_handle(ticket_job_id("jira", first))
    if exit_path == "crash":
        await wait_for(lambda: _first_run_started(settings, first), timeout=60)
        os.killpg(agent_pid(await launch(client, first, 1)), signal.SIGKILL)
    elif exit_path == "cancel":
        await first_job.signal(AgentJobWorkflow.cancel)
    with pytest.raises(WorkflowFailureError) as failed:
        await ticket_result(client, first)
    expected = {"failure": "FAILED", "crash": "CRASHED", "timeout": "TIMED_OUT", "cancel": "CANCELLED"}
    assert failed.value.cause.message.startswith(expected[exit_path] + ":")

    assert (await ticket_result(client, second)).state == JobState.SUCCEEDED
    state = await claim_state(client, sample_remote)
    assert state.holders == [] and state.waiting == []
    assert not is_running(agent_pid(await launch(client, first, 1)))


async def _in_state(client, key: str, state: JobState) -> bool:
    return await job_state(client, key) == state


async def _first_run_started(settings, key: str) -> bool:
    attempt = settings.jobs_dir / safe_name(ticket_job_id("jira", key)) / "attempt-1"
    return any(attempt.glob("workdir-*/**/first-run"))
