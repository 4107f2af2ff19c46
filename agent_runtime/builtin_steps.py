"""The built-in steps of a per-job task: `python -m agent_runtime.builtin_steps {clone,code,bundle} JOB_DIR ...`.

Each runs as a DAG step process like any shell step, so its output streams into the job's sequenced
log and a timeout or cancel stops it the same way. JOB_DIR holds `task/` (the downloaded task files)
and `repo/` (the clone, the DAG's working directory). The exit code classes a failure (sysexits):
`EXIT_NETWORK` the remote failed us, `EXIT_SCRIPT` the work itself failed (e.g. no change), anything
else is infrastructure. The coding step also leaves `outcome.json` with its summary for the result.

The agent validated `job.json` (contracts.jobs.TaskInstructions) before it built the DAG, and gives each
step what it needs of it as arguments (agent_runtime/job_task.py). So a step imports no pydantic: each
is a process of its own, three per job, and pydantic's import alone costs about 0.25 s of CPU in each.
A CLI coding agent's adapter is imported only by the code step that runs it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from agent_runtime.workspace import GitError, RemoteUnreachable, Workspace, clone
from contracts.failures import FailureClass

if TYPE_CHECKING:
    from agent_runtime.coding_agents.base import CodingAgentOutcome

EXIT_NETWORK = os.EX_UNAVAILABLE
EXIT_SCRIPT = os.EX_DATAERR
EXIT_INFRASTRUCTURE = os.EX_SOFTWARE
JOB_FILE = "job.json"
OUTCOME_FILE = "outcome.json"
BUNDLE_FILE = "work.bundle"
# The coding CLI's HOME, config and temporary files: beside the clone, never in its diff.
CLI_HOME_DIR = "agent-home"
# Set by the launcher (activities/agent_env.py); the code step inherits them from the agent.
MODEL_GATEWAY_ENV = "CONDUCTOR_AGENT_MODEL_GATEWAY"
TOKEN_ENV = "CONDUCTOR_AGENT_TOKEN"


def _clone(job_dir: Path, args: argparse.Namespace) -> int:
    print(f"cloning {args.repo_url} ({args.base_branch})", flush=True)
    workspace = clone(args.repo_url, args.base_branch, job_dir / "repo")
    workspace.create_branch(args.branch)
    print(f"on new branch {args.branch} at {workspace.head()}")
    return 0


def _code(job_dir: Path, args: argparse.Namespace) -> int:
    prompt = (job_dir / "task" / args.prompt_file).read_text(encoding="utf-8")
    repo = job_dir / "repo"
    print(f"running the {args.coding_agent} coding agent", flush=True)
    if args.coding_agent == "demo":
        from agent_runtime.coding_agents.demo import run_demo_agent

        outcome = run_demo_agent(repo, args.ticket_key, args.commit_message, prompt)
        print(outcome.stdout_tail, end="")
    else:
        outcome = _run_cli_agent(args.coding_agent, job_dir, prompt, args.timeout)
    outcome_json = json.dumps(dataclasses.asdict(outcome), indent=2)
    (job_dir / OUTCOME_FILE).write_text(outcome_json, encoding="utf-8")
    print(outcome.summary, file=sys.stderr if outcome.failure_class is not FailureClass.NONE else sys.stdout)
    if outcome.failure_class is FailureClass.NONE:
        return 0
    return EXIT_SCRIPT if outcome.failure_class is FailureClass.SCRIPT else EXIT_INFRASTRUCTURE


def _run_cli_agent(name: str, job_dir: Path, prompt: str, timeout: float) -> CodingAgentOutcome:
    from agent_runtime.coding_agents.adapters import CLI_ADAPTERS
    from agent_runtime.coding_agents.base import CliWorkspace, CodingAgentOutcome
    from agent_runtime.coding_agents.cli_process import run_cli

    if name not in CLI_ADAPTERS:
        return CodingAgentOutcome(
            exit_code=EXIT_INFRASTRUCTURE,
            summary=f"unknown coding agent {name!r}: demo, {', '.join(CLI_ADAPTERS)}",
            failure_class=FailureClass.INFRASTRUCTURE,
        )
    gateway, token = os.environ.get(MODEL_GATEWAY_ENV, ""), os.environ.get(TOKEN_ENV, "")
    if not gateway or not token:
        return CodingAgentOutcome(
            exit_code=EXIT_INFRASTRUCTURE,
            summary=f"the {name} coding agent needs the conductor's model gateway: {MODEL_GATEWAY_ENV} "
            f"and {TOKEN_ENV} must be set (the launcher sets them)",
            failure_class=FailureClass.INFRASTRUCTURE,
        )
    workspace = CliWorkspace(
        repo=job_dir / "repo", home=job_dir / CLI_HOME_DIR, model_gateway_url=gateway, model_token=token
    )
    return run_cli(CLI_ADAPTERS[name], workspace, prompt, timeout)


def _bundle(job_dir: Path, args: argparse.Namespace) -> int:
    workspace = Workspace(job_dir / "repo")
    workspace.commit_all(args.commit_message)
    if workspace.commits_ahead(args.base_branch) == 0:
        print("the coding agent made no change", file=sys.stderr)
        return EXIT_SCRIPT
    workspace.create_bundle(job_dir / BUNDLE_FILE, args.base_branch, args.branch)
    print(f"bundled {args.branch} at {workspace.head()}")
    return 0


_STEPS = {"clone": _clone, "code": _code, "bundle": _bundle}


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m agent_runtime.builtin_steps")
    steps = parser.add_subparsers(dest="step", required=True)
    clone_step = steps.add_parser("clone", help="clone the base branch and create the job's branch")
    clone_step.add_argument("--repo-url", required=True)
    code_step = steps.add_parser("code", help="run the coding agent in the clone")
    # "demo" or a CLI adapter's name (agent_runtime/coding_agents/__init__.py, not imported here).
    code_step.add_argument("--coding-agent", default="demo")
    code_step.add_argument("--timeout", type=float, default=1500.0, help="coding agent timeout, seconds")
    code_step.add_argument("--prompt-file", required=True, help="the prompt, relative to JOB_DIR/task")
    code_step.add_argument("--ticket-key", required=True)
    code_step.add_argument("--commit-message", required=True)
    bundle_step = steps.add_parser("bundle", help="commit the work and bundle the job's branch")
    bundle_step.add_argument("--commit-message", required=True)
    for step in (clone_step, code_step, bundle_step):
        step.add_argument("job_dir", type=Path)
    for step in (clone_step, bundle_step):
        step.add_argument("--base-branch", required=True)
        step.add_argument("--branch", required=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = argument_parser().parse_args(argv)
    try:
        return _STEPS[args.step](args.job_dir, args)
    except RemoteUnreachable as err:
        print(err.stderr.rstrip(), err, sep="\n", file=sys.stderr)
        return EXIT_NETWORK
    except GitError as err:
        print(err.stderr.rstrip(), err, sep="\n", file=sys.stderr)
        return EXIT_INFRASTRUCTURE


if __name__ == "__main__":
    sys.exit(main())
