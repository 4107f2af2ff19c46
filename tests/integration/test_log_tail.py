"""Logs keep their tail: the agent is stopped only after its last line is stored.

A 600,000-line step through the real sandboxed agent, gateway and local log store: every line is
stored, the attempt's log is marked complete, and `conductor logs --follow` returns.
"""

import asyncio
import os
import sys
import time

import pytest

from conductor_worker.gateway.local_log_store import LocalLogStore
from contracts.ids import ticket_job_id
from contracts.jobs import JobState
from tests.helpers import fresh_key, install_fake_codex, ticket_result
from tests.integration.test_agent_relaunch import start_ticket

LINES = 600_000
FLOOD_CODEX = f"""#!/bin/sh
seq 1 {LINES}
echo "changed by the stand-in coding agent" > codex-change.txt
"""


@pytest.mark.timeout(240)
async def test_a_600000_line_step_is_stored_whole_and_follow_returns(
    client, settings, start_conductor, tmp_path, monkeypatch
):
    install_fake_codex(tmp_path / "bin", FLOOD_CODEX, monkeypatch)
    settings = settings.model_copy(update={"coding_agent": "codex"})
    await start_conductor(settings)
    key = fresh_key()
    started = time.monotonic()
    await start_ticket(client, settings, key)
    # Followed from the start, as an operator would: it must return once the agent's last line is in.
    follow = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "conductor_worker",
        "logs",
        "--follow",
        ticket_job_id("jira", key),
        env={**os.environ, "CONDUCTOR_STATE_DIR": str(settings.state_dir)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    followed = asyncio.create_task(follow.communicate())
    result = await ticket_result(client, key, timeout=200)
    elapsed = time.monotonic() - started

    assert result.state == JobState.SUCCEEDED, result
    store = LocalLogStore(settings.logs_path)
    assert store.is_complete(result.job_id, 1), "the log was not complete when the job ended"
    lines = store.read(result.job_id, 1)
    # The code step's output: "running ...", the stand-in's numbers, then its summary (its last line).
    flood = [line.text for line in lines if line.step == "code"]
    assert flood[1 : LINES + 1] == [str(i) for i in range(1, LINES + 1)]
    assert lines[-1].text == "conductor-agent: exiting with code 0"
    assert store.dropped(result.job_id, 1).count == 0

    stdout, stderr = await asyncio.wait_for(followed, timeout=60)
    assert follow.returncode == 0, stderr[-2000:]
    assert stdout.count(b"\n") == len(lines)
    print(
        f"{LINES} lines: job SUCCEEDED in {elapsed:.1f}s with {len(lines)} lines stored, log complete; "
        f"`conductor logs --follow` started with the job returned {time.monotonic() - started:.1f}s after"
    )
