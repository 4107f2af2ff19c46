"""Operators drive jobs with the README's `temporal workflow` lines: cancel, retry, query status, steer."""

from pathlib import Path

import pytest
from pydantic import SecretStr
from temporalio.client import WorkflowFailureError

from conductor_worker.gateway.local_log_store import LocalLogStore
from contracts.claims import RepoClaimState, claim_workflow_id
from contracts.ids import safe_name, ticket_job_id
from contracts.jobs import JobState, JobStatus
from contracts.operator import SteerAck
from contracts.policies import JobPolicy
from stores.attempts import file_key
from tests.helpers import fresh_key, install_fake_codex, is_running, ticket_result, wait_for
from tests.integration.test_agent_relaunch import start_ticket
from tests.jira_standin import JiraStandin
from tests.operator_cli import cli_model, run_readme_command

# A coding agent that works for a long time on its first attempt only (it marks its work directory, the
# place a sandboxed agent writes that the test reads), so there is a job to cancel and a retry that then
# succeeds.
SLOW_ONCE = """#!/bin/sh
case "$HOME" in
  */attempt-1/*) touch "$HOME/first-run-started"; sleep 120 ;;
esac
echo "changed by the stand-in coding agent" > codex-change.txt
echo "stand-in codex: done"
"""


@pytest.fixture
def slow_first_codex(tmp_path, monkeypatch) -> None:
    install_fake_codex(tmp_path / "bin", SLOW_ONCE, monkeypatch)


@pytest.fixture
def jira():
    with JiraStandin(email="conductor@acme.test", token="jira-secret") as standin:
        yield standin


@pytest.fixture
def operator_settings(settings, jira, env):
    return settings.model_copy(
        update={
            "coding_agent": "codex",
            "jira_base_url": jira.base_url,
            "jira_email": "conductor@acme.test",
            "jira_api_token": SecretStr("jira-secret"),
            # Cancelled and failed jobs wait for an operator's `retry`.
            "ticket_policy": JobPolicy(retry_window_seconds=600),
            # The stand-in codex makes no model requests: nothing would ever carry a `steer` instruction.
            "steering_delivery_wait_seconds": 1,
        }
    )


def address(env) -> str:
    return env.client.service_client.config.target_host


def agent_pid(status: JobStatus) -> int:
    """The local agent's pid, from the job's own status (its launch's agent id)."""
    return int(status.agent_id.removeprefix("local:"))


async def status_by_cli(env, job_id: str) -> JobStatus:
    output = await run_readme_command(r"--type status", address(env), job_id=job_id)
    return cli_model(JobStatus, output)


@pytest.mark.timeout(180)
async def test_cancel_then_retry_with_the_readme_commands(
    client, env, operator_settings, start_conductor, jira, slow_first_codex, sample_remote: Path, tmp_path
):
    settings = operator_settings
    key = fresh_key()
    jira.add_issue(key)
    job_id = ticket_job_id("jira", key)
    await start_conductor(settings)
    await start_ticket(client, settings, key)

    async def running():
        try:
            status = await status_by_cli(env, job_id)
        except AssertionError:  # not started yet
            return None
        return status if status.state == JobState.RUNNING and status.agent_id else None

    status = await wait_for(running, timeout=60)
    assert status.attempt == 1 and status.claim_workflow_id == claim_workflow_id(str(sample_remote))
    pid = agent_pid(status)
    first_attempt = settings.jobs_dir / safe_name(job_id) / "attempt-1"
    await wait_for(lambda: _any(first_attempt.glob("workdir-*/**/first-run-started")), timeout=60)  # it works
    assert is_running(pid)

    ack = cli_model(SteerAck, await run_readme_command(r"--name steer", address(env), job_id=job_id))
    assert (ack.seq, ack.attempt, ack.state, ack.delivered_to_running_agent) == (1, 1, JobState.RUNNING, True)
    logs = LocalLogStore(settings.logs_path)

    async def agent_got_it():
        lines = [line.text for line in logs.read(job_id, 1)]
        return any("steering #1 from alice: Also update CHANGELOG.md" in text for text in lines)

    await wait_for(agent_got_it, timeout=30)

    async def progress_shown():
        # Progress is relayed at most every few seconds (agent_channel._relay): the log can hold the
        # steering line before the workflow's progress does, so wait for the progress to show it.
        status = await status_by_cli(env, job_id)
        progress = status.progress
        shown = progress and any("steering #1" in line for line in progress.last_lines)
        return status if shown and progress.steps.get("code") == "RUNNING" else None

    status = await wait_for(progress_shown, timeout=30)
    assert status.steering == ["Also update CHANGELOG.md"]
    assert any("steering #1" in line for line in status.progress.last_lines)

    await run_readme_command(r"--name cancel", address(env), job_id=job_id)

    async def cancelled():
        status = await status_by_cli(env, job_id)
        return status if status.state == JobState.CANCELLED and status.notes else None

    status = await wait_for(cancelled, timeout=60)
    assert status.reason == "cancelled by alice: wrong repository"
    assert not is_running(pid), "the cancelled agent still runs"
    queue = cli_model(
        RepoClaimState,
        await run_readme_command(r"--type queue", address(env), claim_id=status.claim_workflow_id),
    )
    assert queue.holders == [] and queue.waiting == []
    [note] = jira.comments(key)
    assert f"job {job_id} was cancelled by alice" in note and "wrong repository" in note
    assert status.notes == [f"jira {key} comment 10000"]

    await run_readme_command(r"--name retry", address(env), job_id=job_id)
    result = await ticket_result(client, key)

    assert result.state == JobState.SUCCEEDED and result.attempt == 2
    prompt = settings.blobs_dir / file_key(job_id, 2, "prompt.md")  # staged for attempt 2
    assert "1. Also update CHANGELOG.md (from alice)" in prompt.read_text(), (
        "the retry's prompt lacks the steering"
    )
    status = await status_by_cli(env, job_id)
    assert status.state == JobState.SUCCEEDED
    assert any("RETRY requested by alice" in line for line in status.history)
    assert len(jira.comments(key)) == 1, "a successful retry leaves no failure note"


@pytest.mark.timeout(120)
async def test_a_failed_job_notes_the_agents_report_on_the_ticket(
    client, env, operator_settings, start_conductor, jira, tmp_path, monkeypatch
):
    install_fake_codex(
        tmp_path / "failing-bin", "#!/bin/sh\necho 'tests failed: 3 of 40' >&2\nexit 3\n", monkeypatch
    )
    settings = operator_settings.model_copy(update={"ticket_policy": JobPolicy(retry_window_seconds=0)})
    key = fresh_key()
    jira.add_issue(key)
    await start_conductor(settings)
    await start_ticket(client, settings, key)

    with pytest.raises(WorkflowFailureError) as failed:
        await ticket_result(client, key)
    assert failed.value.cause.message.startswith("FAILED: agent reported script failure")
    [note] = jira.comments(key)
    assert "ended FAILED" in note and "tests failed: 3 of 40" in note and "exit code" in note


@pytest.mark.timeout(60)
async def test_retry_and_cancel_of_a_finished_job_change_nothing(
    client, env, operator_settings, start_conductor
):
    settings = operator_settings.model_copy(update={"coding_agent": "demo"})
    key = fresh_key()
    await start_conductor(settings)
    await start_ticket(client, settings, key)
    await ticket_result(client, key)
    job_id = ticket_job_id("jira", key)
    # The workflow has closed: the CLI says so and nothing changes.
    with pytest.raises(AssertionError, match="exited"):
        await run_readme_command(r"--name retry", address(env), job_id=job_id)
    assert (await status_by_cli(env, job_id)).state == JobState.SUCCEEDED


async def _any(paths) -> bool:
    return any(True for _ in paths)
