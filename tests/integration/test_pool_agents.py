"""Pool agents on real parts: `conductor-agent pool` subprocesses, conductors serving the REST API on
loopback (in this process, or as their own processes to SIGKILL), the dev server, `run_script`.
"""

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from conductor_worker.pool_api.run_script import run_script
from contracts.jobs import FailureClass
from contracts.pool import ScriptStatus
from tests.helpers import free_port, is_running, wait_for
from tests.pool_helpers import JOIN_TOKEN, group_members, pool_agent, stop_agent
from tests.scale_helpers import conductor_process

TASKS = 20
AGENTS = 3
PER_AGENT = 2


@pytest.fixture
def rest_settings(settings):
    return settings.model_copy(
        update={"rest_listen": f"127.0.0.1:{free_port()}", "pool_join_token": SecretStr(JOIN_TOKEN)}
    )


@pytest.fixture
def agents():
    started: list[subprocess.Popen] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.mark.timeout(240)
async def test_three_agents_run_twenty_scripts_at_most_two_at_a_time_each(
    client, rest_settings, start_conductor, agents, tmp_path
):
    await start_conductor(rest_settings)
    url = f"http://{rest_settings.rest_listen}"
    spans = tmp_path / "spans"
    spans.mkdir()
    for n in range(AGENTS):
        agents.append(pool_agent([url], f"pool-{n}", tmp_path / f"agent-{n}.log", max_concurrency=PER_AGENT))
    # Each script records which agent ran it and when; its output is its own number.
    script = (
        'start=$(date +%s.%N); sleep 0.5; echo "$CONDUCTOR_AGENT_ID $start $(date +%s.%N)" > {spans}/{n}; '
        'echo "task {n}"; echo "stderr {n}" >&2'
    )
    started = time.monotonic()
    results = await asyncio.gather(
        *(
            run_script(
                client, script.format(spans=spans, n=n), timeout=60, task_queue=rest_settings.task_queue
            )
            for n in range(TASKS)
        )
    )
    elapsed = time.monotonic() - started
    assert [(r.status, r.exit_code, r.stdout, r.stderr) for r in results] == [
        (ScriptStatus.COMPLETED, 0, f"task {n}\n", f"stderr {n}\n") for n in range(TASKS)
    ]
    runs = {n: (spans / str(n)).read_text().split() for n in range(TASKS)}
    assert [r.agent_id for r in results] == [runs[n][0] for n in range(TASKS)]
    by_agent: dict[str, list[tuple[float, float]]] = {}
    for agent_id, begin, end in runs.values():
        by_agent.setdefault(agent_id, []).append((float(begin), float(end)))
    peaks = {agent_id: _peak(spans_) for agent_id, spans_ in by_agent.items()}
    print(f"\n{TASKS} scripts on {AGENTS} agents in {elapsed:.1f} s; peak concurrency per agent: {peaks}")
    assert set(peaks) <= {f"pool-{n}" for n in range(AGENTS)} and len(peaks) >= 2
    assert max(peaks.values()) <= PER_AGENT
    # In a thread: the conductor serving the agents' last calls runs on this event loop.
    assert [await asyncio.to_thread(stop_agent, proc) for proc in agents] == [0] * AGENTS


@pytest.mark.timeout(240)
async def test_a_task_survives_its_agents_conductor_being_killed(
    client, rest_settings, agents, tmp_path, monkeypatch
):
    monkeypatch.setenv("CONDUCTOR_POOL_JOIN_TOKEN", JOIN_TOKEN)
    log = tmp_path / "conductors.log"
    conductors, urls = [], []
    try:
        for _ in range(2):
            port = free_port()
            monkeypatch.setenv("CONDUCTOR_REST_LISTEN", f"127.0.0.1:{port}")
            # One after the other: the second reads the token secret the first created in the state dir.
            conductors.append(conductor_process(rest_settings, free_port(), log))
            urls.append(f"http://127.0.0.1:{port}")
            await wait_for(lambda: _answers(urls[-1]), timeout=60)
        agent_log = tmp_path / "agent.log"
        agents.append(pool_agent(urls, "failover-node", agent_log, max_concurrency=1))
        marker = tmp_path / "started"
        running = asyncio.create_task(
            run_script(
                client,
                f"touch {marker}; sleep 8; echo still here",
                timeout=60,
                task_queue=rest_settings.task_queue,
            )
        )
        await wait_for(lambda: _exists(marker), timeout=60)
        os.killpg(conductors[0].pid, signal.SIGKILL)  # the conductor the agent polled and beat to
        conductors[0].wait(timeout=10)
        result = await asyncio.wait_for(running, timeout=120)
        # The result reached the workflow; if its acknowledgement was lost on the way (a call that timed
        # out while the killed conductor's workflow tasks timed out), the agent's retry is acknowledged.
        await wait_for(lambda: _logged(agent_log, "result acknowledged"), timeout=60)
    finally:
        for proc in conductors:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
    assert (result.status, result.stdout, result.agent_id, result.attempts) == (
        ScriptStatus.COMPLETED,
        "still here\n",
        "failover-node",
        1,
    )
    assert f"switching to {urls[1]}" in agent_log.read_text()


@pytest.mark.timeout(240)
async def test_a_killed_agents_tasks_are_requeued_or_fail_as_infrastructure(
    client, rest_settings, start_conductor, agents, tmp_path
):
    await start_conductor(rest_settings)
    url = f"http://{rest_settings.rest_listen}"
    pids = tmp_path / "pids"
    pids.mkdir()
    agents.append(pool_agent([url], "doomed", tmp_path / "doomed.log", max_concurrency=2))
    script = 'echo $$ > {pids}/"$CONDUCTOR_AGENT_ID"-{name}; sleep 10; echo {name} done'
    common = dict(timeout=60, task_queue=rest_settings.task_queue, lease_seconds=15)
    retried = asyncio.create_task(
        run_script(client, script.format(pids=pids, name="retried"), max_attempts=2, **common)
    )
    await wait_for(lambda: _exists(pids / "doomed-retried"), timeout=60)
    once = asyncio.create_task(
        run_script(client, script.format(pids=pids, name="once"), max_attempts=1, **common)
    )
    await wait_for(lambda: _exists(pids / "doomed-once"), timeout=60)
    doomed_groups = [int((pids / f"doomed-{name}").read_text()) for name in ("retried", "once")]

    os.kill(agents[0].pid, signal.SIGKILL)  # the agent only: its scripts are in sessions of their own
    agents[0].wait(timeout=10)
    # Each script's watchdog sees its agent gone and kills the script's whole process group.
    await wait_for(lambda: _all_gone(doomed_groups), timeout=10)

    agents.append(pool_agent([url], f"rescuer-{uuid.uuid4().hex[:4]}", tmp_path / "rescuer.log"))
    first, second = await asyncio.wait_for(asyncio.gather(retried, once), timeout=120)
    assert (first.status, first.stdout, first.attempts, first.failure_class) == (
        ScriptStatus.COMPLETED,
        "retried done\n",
        2,
        FailureClass.NONE,
    )
    assert first.agent_id.startswith("rescuer-")
    assert first.reason == "agent doomed sent no beat for 15 s (attempt 1)"
    assert (second.status, second.failure_class, second.attempts) == (
        ScriptStatus.FAILED,
        FailureClass.INFRASTRUCTURE,
        1,
    )
    assert second.reason == "agents lost 1 time(s): agent doomed sent no beat for 15 s (attempt 1)"
    rescuer_group = int((pids / f"{first.agent_id}-retried").read_text())
    assert await asyncio.to_thread(stop_agent, agents[1]) == 0
    assert not group_members(rescuer_group) and all(not is_running(p) for p in doomed_groups)


@pytest.mark.timeout(180)
async def test_conductor_run_script_prints_the_result_and_mirrors_its_exit_code(
    rest_settings, start_conductor, agents, tmp_path
):
    await start_conductor(rest_settings)
    agents.append(pool_agent([f"http://{rest_settings.rest_listen}"], "cli-node", tmp_path / "agent.log"))
    env = {
        **os.environ,
        "CONDUCTOR_TEMPORAL_ADDRESS": rest_settings.temporal_address,
        "CONDUCTOR_TASK_QUEUE": rest_settings.task_queue,
    }
    code, out, err = await _conductor(
        env, "run-script", "--capability", "shell", "echo hi; echo oops >&2; exit 3"
    )
    assert (code, out) == (3, "hi\n")
    # The script's stderr, then the summary line.
    assert re.fullmatch(
        r"oops\ntask \w+ on cli-node: failed \(exit code 3\) in [\d.]+ s, failure class script, "
        r"attempts 1: script exited with code 3\n",
        err,
    ), err
    code, out, _ = await _conductor(env, "run-script", "--timeout", "1", "--json", "echo started; sleep 30")
    result = json.loads(out)
    assert (code, result["status"], result["failure_class"], result["stdout"]) == (
        124,
        "timed_out",
        "script",
        "started\n",
    )


async def _conductor(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    # An asyncio subprocess: the conductor it talks to serves from this event loop.
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "conductor_worker",
        *args,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    return proc.returncode, out.decode(), err.decode()


def _peak(spans: list[tuple[float, float]]) -> int:
    """Most spans open at one instant (an end and a start at the same instant do not overlap)."""
    events = sorted([(begin, 1) for begin, _ in spans] + [(end, -1) for _, end in spans])
    peak = current = 0
    for _, step in events:
        current += step
        peak = max(peak, current)
    return peak


async def _answers(url: str) -> bool:
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            return (await http.get(f"{url}/openapi.json")).status_code == 200
    except httpx.TransportError:
        return False


async def _logged(path: Path, text: str) -> bool:
    return text in path.read_text()


async def _exists(path: Path) -> bool:
    return path.exists()


async def _all_gone(groups: list[int]) -> bool:
    return not any(group_members(pgid) for pgid in groups)
