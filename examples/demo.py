"""`make demo`: the whole spine on this machine, through real parts.

moto's server stands in for SQS (over real HTTP), a bare git repository for the remote. The conductor
itself runs exactly as `conductor dev` runs it: Temporal dev server, worker, gRPC gateway, local launcher.

    make demo                 # send the sample ticket, print the branch it produced, stop
    make demo ARGS=--serve    # same, then leave everything running to explore (Ctrl-C stops)
    make demo ARGS="--agent codex"    # the real Codex CLI (or `claude`: Claude Code) through the conductor's
                                      # model gateway, against the project's scripted model (tests/model_standin.py)
    CONDUCTOR_MODEL_API_KEY=sk-... make demo ARGS="--agent codex --model-upstream https://api.openai.com/v1"
                                      # the gateway's traffic to a real provider instead
"""

import argparse
import asyncio
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import boto3
from moto.server import ThreadedMotoServer

from conductor_worker.config import Settings
from conductor_worker.process.client import connect
from contracts.ids import ticket_workflow_id
from contracts.jobs import JobResult

ROOT = Path(__file__).resolve().parent.parent
TICKET = ROOT / "examples" / "tickets" / "ENG-123.json"
GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "Demo",
    "GIT_AUTHOR_EMAIL": "demo@example.invalid",
    "GIT_COMMITTER_NAME": "Demo",
    "GIT_COMMITTER_EMAIL": "demo@example.invalid",
}


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, env=GIT_ENV, check=True, capture_output=True, text=True
    ).stdout.rstrip()


def make_remote(state: Path) -> Path:
    seed, bare = state / "greeter-seed", state / "remotes" / "greeter.git"
    shutil.copytree(ROOT / "examples" / "sample-repo", seed)
    git("init", "-q", "-b", "main", cwd=seed)
    git("add", "-A", cwd=seed)
    git("commit", "-q", "-m", "Initial commit", cwd=seed)
    git("init", "-q", "--bare", "-b", "main", str(bare))
    git("push", "-q", str(bare), "main", cwd=seed)
    return bare


def make_queues(endpoint: str) -> str:
    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1")
    dlq = sqs.create_queue(QueueName="conductor-intake-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return sqs.create_queue(
        QueueName="conductor-intake",
        Attributes={"RedrivePolicy": f'{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"3"}}'},
    )["QueueUrl"]


async def await_ticket(settings: Settings, key: str, timeout: float) -> tuple[JobResult, str]:
    deadline = time.monotonic() + timeout
    while True:  # the dev server comes up in the child process; keep knocking until it answers
        try:
            client = await connect(settings)
            break
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)
    handle = client.get_workflow_handle(ticket_workflow_id("jira", key), result_type=JobResult)
    while True:
        try:
            result = await asyncio.wait_for(handle.result(), timeout=max(1, deadline - time.monotonic()))
            return result, (await handle.describe()).run_id
        except Exception as err:  # not started yet: the intake has not polled the message
            if "not found" not in str(err).lower() or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--serve", action="store_true", help="leave the stack running afterwards")
    parser.add_argument("--timeout", type=float, default=180, help="seconds to wait for the job")
    parser.add_argument("--agent", choices=["demo", "codex", "claude"], default="demo", help="coding agent")
    parser.add_argument(
        "--model-upstream",
        default="",
        help="the provider's base URL (e.g. https://api.openai.com/v1) instead of the scripted model; "
        "its key in CONDUCTOR_MODEL_API_KEY",
    )
    # Where it runs; a test runs the demo beside a developer's own with other ports and directory.
    parser.add_argument("--state-dir", type=Path, default=ROOT / ".demo-state", help="emptied first")
    parser.add_argument("--temporal-port", type=int, default=7233)
    parser.add_argument("--ui-port", type=int, default=8233)
    parser.add_argument("--gateway-listen", default="127.0.0.1:50051", help="the agents' gRPC gateway")
    args = parser.parse_args()
    if args.model_upstream and not os.environ.get("CONDUCTOR_MODEL_API_KEY"):
        parser.error("--model-upstream needs the provider's key in CONDUCTOR_MODEL_API_KEY")

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request access log
    state = args.state_dir.resolve()
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True)
    os.environ.update(AWS_ACCESS_KEY_ID="demo", AWS_SECRET_ACCESS_KEY="demo", AWS_DEFAULT_REGION="us-east-1")
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    remote = make_remote(state)
    (state / "routes.yaml").write_text(
        f"tickets:\n  - project: ENG\n    route:\n      repo_url: {remote}\n"
        "      base_branch: main\n      publisher: local\n      name: examples/greeter\n"
    )
    conductor_env = {
        **os.environ,
        "CONDUCTOR_STATE_DIR": str(state / "conductor"),
        "CONDUCTOR_ROUTES_FILE": str(state / "routes.yaml"),
        "CONDUCTOR_SQS_QUEUE_URL": make_queues(endpoint),
        "CONDUCTOR_AWS_ENDPOINT_URL": endpoint,
        "CONDUCTOR_SQS_WAIT_SECONDS": "2",
        "CONDUCTOR_GATEWAY_LISTEN": args.gateway_listen,
    }
    model = _model_settings(args, conductor_env)
    settings = Settings(temporal_address=f"127.0.0.1:{args.temporal_port}")
    print(f"== starting `conductor dev` (logs: {state / 'conductor.log'})", flush=True)
    log = (state / "conductor.log").open("w")
    conductor = subprocess.Popen(
        [
            *(sys.executable, "-m", "conductor_worker", "dev"),
            *("--temporal-port", str(args.temporal_port), "--ui-port", str(args.ui_port)),
        ],
        env=conductor_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    try:
        sqs = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1")
        sent = sqs.send_message(
            QueueUrl=conductor_env["CONDUCTOR_SQS_QUEUE_URL"], MessageBody=TICKET.read_text()
        )
        print(f"== sent ticket ENG-123 to SQS (message {sent['MessageId']})", flush=True)
        result, run_id = asyncio.run(await_ticket(settings, "ENG-123", args.timeout))
        workflow_id = ticket_workflow_id("jira", "ENG-123")
        print(f"== job {result.job_id}: {result.state}")
        print(f"branch {result.branch} @ {result.commit_sha[:12]} in {remote}")
        print(git("diff", "--stat", "main", result.branch, cwd=remote))
        print(f"summary: {result.summary}")
        usage = result.agent.model_usage if result.agent else None
        if usage is not None:
            print(f"model usage ({args.agent} through the gateway): {usage.render()}")
        print(
            f"Web UI: http://localhost:{args.ui_port}/namespaces/default/workflows/"
            + urllib.parse.quote(workflow_id, safe="")
            + f"/{run_id}/history"
        )
        if args.serve:
            print("== serving; Ctrl-C stops everything", flush=True)
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
        return 0
    finally:
        conductor.send_signal(signal.SIGTERM)
        try:
            conductor.wait(timeout=60)
        except subprocess.TimeoutExpired:
            conductor.kill()
        moto.stop()
        if model is not None:
            model.__exit__(None, None, None)


def _model_settings(args: argparse.Namespace, env: dict[str, str]):
    """Point a real CLI at the scripted model (started here) or at `--model-upstream`; None for the demo agent."""
    if args.agent == "demo":
        return None
    # The CLIs `make agent-clis` installed, and the project's scripted model (the tests' stand-in for the
    # providers), both found from the repository root, which a script run by path does not have on sys.path.
    sys.path.insert(0, str(ROOT))
    from tests.helpers import AGENT_CLIS_BIN
    from tests.model_standin import (
        ModelStandin,
        add_file_patch,
        claude_message_turn,
        claude_write_turn,
        codex_message_turn,
        codex_patch_turn,
    )

    env.update(
        CONDUCTOR_CODING_AGENT=args.agent,
        PATH=f"{AGENT_CLIS_BIN}{os.pathsep}{env['PATH']}",
    )
    api = "OPENAI" if args.agent == "codex" else "ANTHROPIC"
    if args.model_upstream:
        key = os.environ["CONDUCTOR_MODEL_API_KEY"]  # checked with the arguments
        env.update({f"CONDUCTOR_MODEL_{api}_URL": args.model_upstream, f"CONDUCTOR_MODEL_{api}_API_KEY": key})
        print(f"== {args.agent} through the conductor's model gateway to {args.model_upstream}", flush=True)
        return None
    model = ModelStandin(key="demo-upstream-key").__enter__()
    doc, text = "docs/tickets/ENG-123.md", "# ENG-123\n\nSession timeout now redirects to the login page.\n"
    if args.agent == "codex":
        model.script_responses(
            codex_patch_turn(add_file_patch(doc, text)), codex_message_turn("Documented ENG-123.")
        )
    else:
        model.script_messages(claude_write_turn(doc, text), claude_message_turn("Documented ENG-123."))
    env.update(
        {f"CONDUCTOR_MODEL_{api}_URL": f"{model.base_url}/v1", f"CONDUCTOR_MODEL_{api}_API_KEY": model.key}
    )
    print(f"== {args.agent} through the conductor's model gateway to the scripted model at {model.base_url}")
    return model


if __name__ == "__main__":
    sys.exit(main())
