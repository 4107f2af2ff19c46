"""The built-in steps of a per-job task: `python -m agent_runtime.builtin_steps {clone,code,bundle} JOB_DIR`.

Each runs as a DAG step process like any shell step, so its output streams into the job's sequenced
log and a timeout or cancel stops it the same way. JOB_DIR holds `task/` (the downloaded task files)
and `repo/` (the clone, the DAG's working directory). The exit code classes a failure (sysexits):
`EXIT_NETWORK` the remote failed us, `EXIT_SCRIPT` the work itself failed (e.g. no change), anything
else is infrastructure. The coding step also leaves `outcome.json` with its summary for the result.
"""

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

from agent_runtime.coding_agents import CLI_ADAPTERS, CODING_AGENTS
from agent_runtime.coding_agents.base import CliWorkspace, CodingAgentOutcome
from agent_runtime.coding_agents.cli_process import run_cli
from agent_runtime.coding_agents.demo import run_demo_agent
from agent_runtime.workspace import GitError, RemoteUnreachable, Workspace, clone
from contracts.jobs import FailureClass, TaskInstructions

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


def exit_failure_class(exit_code: int | None) -> FailureClass:
    if exit_code == EXIT_NETWORK:
        return FailureClass.NETWORK
    if exit_code == EXIT_SCRIPT:
        return FailureClass.SCRIPT
    return FailureClass.INFRASTRUCTURE


def read_outcome(job_dir: Path) -> CodingAgentOutcome | None:
    path = job_dir / OUTCOME_FILE
    if not path.exists():
        return None
    fields = json.loads(path.read_text(encoding="utf-8"))
    return CodingAgentOutcome(**{**fields, "failure_class": FailureClass(fields["failure_class"])})


def _instructions(job_dir: Path) -> TaskInstructions:
    return TaskInstructions.model_validate_json((job_dir / "task" / JOB_FILE).read_bytes())


def _clone(job_dir: Path, args: argparse.Namespace) -> int:
    instructions = _instructions(job_dir)
    print(f"cloning {instructions.repo_url} ({instructions.base_branch})", flush=True)
    workspace = clone(instructions.repo_url, instructions.base_branch, job_dir / "repo")
    workspace.create_branch(instructions.branch)
    print(f"on new branch {instructions.branch} at {workspace.head()}")
    return 0


def _code(job_dir: Path, args: argparse.Namespace) -> int:
    instructions = _instructions(job_dir)
    prompt = (job_dir / "task" / instructions.prompt_file).read_text(encoding="utf-8")
    repo = job_dir / "repo"
    print(f"running the {args.coding_agent} coding agent", flush=True)
    if args.coding_agent in CLI_ADAPTERS:
        outcome = _run_cli_agent(args.coding_agent, job_dir, prompt, args.timeout)
    else:
        outcome = run_demo_agent(repo, instructions, prompt)
        print(outcome.stdout_tail, end="")
    outcome_json = json.dumps(dataclasses.asdict(outcome), indent=2)
    (job_dir / OUTCOME_FILE).write_text(outcome_json, encoding="utf-8")
    print(outcome.summary, file=sys.stderr if outcome.failure_class is not FailureClass.NONE else sys.stdout)
    if outcome.failure_class is FailureClass.NONE:
        return 0
    return EXIT_SCRIPT if outcome.failure_class is FailureClass.SCRIPT else EXIT_INFRASTRUCTURE


def _run_cli_agent(name: str, job_dir: Path, prompt: str, timeout: float) -> CodingAgentOutcome:
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
    instructions = _instructions(job_dir)
    workspace = Workspace(job_dir / "repo")
    workspace.commit_all(instructions.commit_message)
    if workspace.commits_ahead(instructions.base_branch) == 0:
        print("the coding agent made no change", file=sys.stderr)
        return EXIT_SCRIPT
    workspace.create_bundle(job_dir / BUNDLE_FILE, instructions.base_branch, instructions.branch)
    print(f"bundled {instructions.branch} at {workspace.head()}")
    return 0


_STEPS = {"clone": _clone, "code": _code, "bundle": _bundle}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent_runtime.builtin_steps")
    parser.add_argument("step", choices=sorted(_STEPS))
    parser.add_argument("job_dir", type=Path)
    parser.add_argument("--coding-agent", choices=CODING_AGENTS, default="demo")
    parser.add_argument("--timeout", type=float, default=1500.0, help="coding agent timeout, seconds")
    args = parser.parse_args(argv)
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
