"""`make demo ARGS="--agent codex|claude"`: the demo command itself (make, examples/demo.py, `conductor dev`)
with the real CLI, against the project's scripted model, or against `--model-upstream URL` with
CONDUCTOR_MODEL_API_KEY (here a scripted model this test starts, standing in for the user's provider).

Each run gets its own state directory and ports, so it never meets a developer's own `make demo`.
"""

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import free_port
from tests.model_standin import ModelStandin, add_file_patch, codex_message_turn, codex_patch_turn

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parents[2]
DIFF_STAT = " docs/tickets/ENG-123.md | 3 +++\n 1 file changed, 3 insertions(+)"


def make_demo(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    where = (
        f"--state-dir {tmp_path / 'demo-state'} --temporal-port {free_port()} --ui-port {free_port()} "
        "--gateway-listen 127.0.0.1:0 --timeout 120"
    )
    started = time.monotonic()
    done = subprocess.run(
        ["make", "-s", "demo", f"ARGS={' '.join(args)} {where}"],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    print(f"make demo {' '.join(args)}: {time.monotonic() - started:.1f}s\n{done.stdout}")
    return done


@pytest.mark.parametrize("agent", ["codex", "claude"])
def test_make_demo_runs_the_demo_ticket_with_the_real_cli_against_the_scripted_model(agent, tmp_path):
    done = make_demo(tmp_path, "--agent", agent)

    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert f"== {agent} through the conductor's model gateway to the scripted model" in out
    assert "== job job/ticket/jira/ENG-123: SUCCEEDED" in out
    assert re.search(r"^branch conductor/ENG-123 @ [0-9a-f]{12} in ", out, re.M), out
    assert DIFF_STAT in out
    assert "summary: Documented ENG-123." in out
    usage = re.search(
        rf"^model usage \({agent} through the gateway\): (\d+) model request\(s\), (\d+) input", out, re.M
    )
    assert usage and int(usage[1]) >= 2 and int(usage[2]) >= 200, out


def test_make_demo_sends_the_gateways_traffic_to_model_upstream_with_the_users_key(tmp_path):
    with ModelStandin(key="sk-the-users-own-key") as provider:
        provider.script_responses(
            codex_patch_turn(add_file_patch("docs/tickets/ENG-123.md", "# ENG-123\n\nfrom the provider\n")),
            codex_message_turn("Documented ENG-123."),
        )
        upstream = f"{provider.base_url}/v1"

        done = make_demo(
            tmp_path,
            *("--agent", "codex", "--model-upstream", upstream),
            env={"CONDUCTOR_MODEL_API_KEY": "sk-the-users-own-key"},
        )

        assert done.returncode == 0, done.stdout + done.stderr
        assert f"== codex through the conductor's model gateway to {upstream}" in done.stdout
        assert "== job job/ticket/jira/ENG-123: SUCCEEDED" in done.stdout
        assert DIFF_STAT in done.stdout
        requests = provider.requests_to("/v1/responses")
        assert len(requests) == 2
        assert all(r.headers["authorization"] == "Bearer sk-the-users-own-key" for r in requests)
        assert "model usage (codex through the gateway): 2 model request(s), 200 input tokens" in done.stdout


def test_make_demo_with_model_upstream_and_no_key_says_what_is_missing(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "CONDUCTOR_MODEL_API_KEY"}
    done = subprocess.run(
        [
            ".venv/bin/python",
            "examples/demo.py",
            "--agent",
            "codex",
            "--model-upstream",
            "http://127.0.0.1:9/v1",
            "--state-dir",
            str(tmp_path / "s"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "--model-upstream needs the provider's key in CONDUCTOR_MODEL_API_KEY" in done.stderr
