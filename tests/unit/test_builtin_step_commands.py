"""The built-in steps get what they need of job.json as arguments from the agent, and stay light."""

import shlex
import subprocess
import sys
from pathlib import Path

from agent_runtime.builtin_steps import argument_parser
from agent_runtime.job_task import task_spec
from contracts.jobs import TaskInstructions

INSTRUCTIONS = TaskInstructions(
    job_id="job/ticket/jira/ENG-9",
    ticket_key="ENG-9",
    repo_url="https://git.example/acme app.git",
    base_branch="release/1.x",
    branch="conductor/ENG-9",
    prompt_file="prompt.md",
    # A summary is the ticket's words: quotes, a leading dash, a newline and `$(...)` must arrive as written.
    commit_message="--ENG-9: don't `rm` \"$(whoami)\"; it's -x\n\nBy the agent.",
)


def parsed(tmp_path: Path) -> dict:
    spec = task_spec(tmp_path, INSTRUCTIONS, {}, "demo", 90.0)
    args = {}
    for step in spec.steps:
        argv = shlex.split(step.run)
        assert argv[1:4] == ["-P", "-m", "agent_runtime.builtin_steps"]
        args[step.name] = vars(argument_parser().parse_args(argv[4:]))
    return args


def test_each_step_gets_its_instructions_as_written(tmp_path: Path):
    args = parsed(tmp_path)
    assert args["clone"] == {
        "step": "clone",
        "job_dir": tmp_path.resolve(),
        "repo_url": INSTRUCTIONS.repo_url,
        "base_branch": "release/1.x",
        "branch": "conductor/ENG-9",
    }
    assert args["code"] == {
        "step": "code",
        "job_dir": tmp_path.resolve(),
        "coding_agent": "demo",
        "timeout": 90.0,
        "prompt_file": "prompt.md",
        "ticket_key": "ENG-9",
        "commit_message": INSTRUCTIONS.commit_message,
    }
    assert args["bundle"]["commit_message"] == INSTRUCTIONS.commit_message
    assert args["bundle"]["branch"] == "conductor/ENG-9"


def test_the_clone_bundle_and_demo_code_steps_import_no_pydantic():
    # Three step processes per job: pydantic's import would cost each about 0.25 s of CPU.
    code = (
        "import sys, agent_runtime.builtin_steps, agent_runtime.coding_agents.demo;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pydantic', 'grpc', 'temporalio')))"
    )
    out = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
