"""The local launcher's sandbox holds: a hostile coding agent reaches nothing of the conductor.

The same hostile agent (tests/hostile_agent.py) runs once in the real bubblewrap sandbox, where every
attempt fails and the job succeeds as usual, and once with CONDUCTOR_SANDBOX=unsafe, where every attempt
succeeds: proof that the attempts are real and the test can fail.
"""

import json
import os
import sys
import time
from pathlib import Path

import pytest

from activities.sandbox import SandboxUnavailable
from agent_runtime.builtin_steps import CLI_HOME_DIR
from conductor_worker.process.worker import build_launcher
from contracts.ids import safe_name, ticket_job_id
from contracts.jobs import JobState, TaskFile
from stores.attempts import file_key
from tests.git_helpers import git, rev_parse
from tests.helpers import fresh_key, install_fake_codex, stage_attempt, ticket_result
from tests.integration.test_agent_relaunch import start_ticket
from workflows.agent_job import AgentJobWorkflow

HOSTILE = Path(__file__).resolve().parent.parent / "hostile_agent.py"
ATTEMPTS = (
    "token_secret",
    "token_secret_relative",
    "conductor_environ",
    "signal_conductor",
    "other_job",
    "remote_read",
    "push_main_by_path",
    "push_main_origin",
)


def install_hostile_agent(settings, remote: Path, bin_dir: Path, monkeypatch) -> dict:
    stage_attempt(
        settings,
        "job/ticket/jira/OTHER-1",
        1,
        [TaskFile(path="prompt.md", content="another job's private prompt\n")],
    )
    targets = {
        "token_secret": str(settings.state_dir / "token-secret"),
        # HOME is state/jobs/<job>/attempt-N/workdir-X/<job>-N/<CLI home>: six levels below the state dir.
        "secret_relative": "../../../../../../token-secret",
        "conductor_pid": os.getpid(),  # the conductor runs in this test process
        "other_job_file": str(settings.blobs_dir / file_key("job/ticket/jira/OTHER-1", 1, "prompt.md")),
        "jobs_dir": str(settings.blobs_dir / "jobs"),
        "remote": str(remote),
    }
    # The hostile program is Python; the stand-in `codex` (a shell script that passes the version check)
    # runs it. Both live in bin_dir, which the sandbox binds read-only as a PATH entry.
    bin_dir.mkdir(parents=True, exist_ok=True)
    hostile = bin_dir / "hostile_agent.py"
    hostile.write_text(HOSTILE.read_text().replace("__TARGETS__", json.dumps(targets), 1))
    install_fake_codex(bin_dir, f'#!/bin/sh\n"{sys.executable}" "{hostile}" "$@"\n', monkeypatch)
    return targets


async def run_hostile_job(client, settings, start_conductor, sample_remote, tmp_path, monkeypatch):
    settings = settings.model_copy(update={"coding_agent": "codex"})
    secret = settings.signing_secret().decode()
    install_hostile_agent(settings, sample_remote, tmp_path / "bin", monkeypatch)
    # A branch the job has no business seeing.
    git("--git-dir", str(sample_remote), "branch", "private-work", "main")
    main_before = rev_parse(sample_remote, "refs/heads/main")
    await start_conductor(settings)
    key = fresh_key()
    started = time.monotonic()
    await start_ticket(client, settings, key)
    result = await ticket_result(client, key)
    elapsed = time.monotonic() - started
    attempt = settings.jobs_dir / safe_name(ticket_job_id("jira", key)) / f"attempt-{result.attempt}"
    (report_file,) = attempt.glob(f"workdir-*/*/{CLI_HOME_DIR}/hostile-report.json")
    report = json.loads(report_file.read_text())
    status = await client.get_workflow_handle(result.job_id).query(AgentJobWorkflow.status)
    return result, report, secret, main_before, status, elapsed


@pytest.mark.timeout(90)
async def test_a_hostile_agent_in_the_sandbox_reaches_nothing(
    client, settings, start_conductor, sample_remote, tmp_path, monkeypatch
):
    result, report, secret, main_before, status, elapsed = await run_hostile_job(
        client, settings, start_conductor, sample_remote, tmp_path, monkeypatch
    )

    for name in ATTEMPTS:
        assert report[name]["ok"] is False, f"{name} succeeded inside the sandbox: {report[name]}"
    assert report["write_outside_workdir"]["ok"] is False
    assert "Read-only file system" in report["write_outside_workdir"]["detail"]
    assert secret not in json.dumps(report)
    # The jobs directory shows the mount points down to its own work directory, no other job.
    assert "OTHER-1" not in report["jobs_dir_listing"]["detail"]
    # At the remote's path the agent sees a read-only seed: the base branch only, no other branch.
    assert report["remote_refs"]["ok"] is True
    assert "refs/heads/main" in report["remote_refs"]["detail"]
    assert "private-work" not in report["remote_refs"]["detail"]
    # The job's outcome is unaffected: it succeeded and published its branch; main is untouched.
    assert result.state == JobState.SUCCEEDED, result
    assert rev_parse(sample_remote, "refs/heads/main") == main_before
    assert rev_parse(sample_remote, f"refs/heads/conductor/{result.job_id.rsplit('/', 1)[1]}")
    assert not any("UNSANDBOXED" in line for line in status.history)
    print(f"sandboxed hostile job: {len(ATTEMPTS) + 1} attempts refused, job SUCCEEDED in {elapsed:.1f}s")


@pytest.mark.timeout(90)
async def test_the_same_hostile_agent_unsandboxed_reaches_everything(
    client, settings, start_conductor, sample_remote, tmp_path, monkeypatch
):
    settings = settings.model_copy(update={"sandbox": "unsafe"})
    result, report, secret, main_before, status, elapsed = await run_hostile_job(
        client, settings, start_conductor, sample_remote, tmp_path, monkeypatch
    )

    for name in ATTEMPTS:
        assert report[name]["ok"] is True, f"{name} failed without the sandbox: {report[name]}"
    assert report["token_secret"]["detail"] == secret == report["token_secret_relative"]["detail"]
    own_environ = Path(f"/proc/{os.getpid()}/environ").read_bytes().decode(errors="replace")
    assert report["conductor_environ"]["detail"] == own_environ[:2000]
    assert report["other_job"]["detail"] == "another job's private prompt\n"
    assert "OTHER-1" in report["jobs_dir_listing"]["detail"]
    assert "private-work" in report["remote_refs"]["detail"]
    assert rev_parse(sample_remote, "refs/heads/main") == report["push_main_origin"]["detail"] != main_before
    assert any("UNSANDBOXED agent local:" in line for line in status.history)
    print(f"unsandboxed hostile job: every attempt succeeded; job {result.state} in {elapsed:.1f}s")


def test_without_bubblewrap_the_launcher_refuses_unless_unsafe(settings, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(SandboxUnavailable, match="CONDUCTOR_SANDBOX=unsafe"):
        build_launcher(settings)
    assert build_launcher(settings.model_copy(update={"sandbox": "unsafe"})).sandbox == "unsafe"
