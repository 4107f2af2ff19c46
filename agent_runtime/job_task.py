"""A per-job task as a step DAG: the built-in steps plus the job's own, and the result they add up to.

    clone ──► code ──► bundle            the built-ins (agent_runtime/builtin_steps.py)
                 └──► <extra steps> ──┘  from the optional task file `steps.json`

`steps.json` is a JSON list of StepSpecs (contracts/steps.py), e.g.
`[{"name": "test", "run": "make test", "timeout_seconds": 600}]`. Extra steps run in the clone; one
that names no `needs` runs after `code`. `bundle` needs every extra step, so the work is committed
and bundled only once the job's own checks passed (and their output files are committed with it,
unless the repository ignores them).
"""

import json
import re
import shlex
import sys
from pathlib import Path

from pydantic import TypeAdapter

from agent_runtime.builtin_steps import BUNDLE_FILE, EXIT_NETWORK, EXIT_SCRIPT, OUTCOME_FILE
from agent_runtime.coding_agents.base import KILL_GRACE_SECONDS, TAIL_CHARS, CodingAgentOutcome
from agent_runtime.workspace import Workspace
from contracts.jobs import AgentResult, AgentStatus, FailureClass, TaskInstructions
from contracts.steps import StepResult, StepSpec, StepStatus, TaskResult, TaskSpec

STEPS_FILE = "steps.json"
# W3C trace context, version 00 (https://www.w3.org/TR/trace-context/#traceparent-header); anything else
# from the gateway is not passed on.
TRACEPARENT = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
TRACEPARENT_VARIABLE = "TRACEPARENT"
BUILTIN_STEPS = ("clone", "code", "bundle")
REPO_DIR = "repo"
STEP_KILL_GRACE_SECONDS = 3.0
# run_cli stops the coding agent at its own timeout; the step's timeout is the backstop behind it.
_CODE_STEP_SLACK_SECONDS = 2 * KILL_GRACE_SECONDS + 30


def task_spec(
    job_dir: Path,
    instructions: TaskInstructions,
    files: dict[str, Path],
    coding_agent: str,
    timeout: float,
    traceparent: str = "",
) -> TaskSpec:
    """The task's steps; with the job's W3C trace context (`traceparent` from the handshake), every step
    gets it as TRACEPARENT, so a tool that traces (the coding CLI too) can join the job's trace."""
    extra = extra_steps(files)
    branches = {"base-branch": instructions.base_branch, "branch": instructions.branch}
    code = {
        "coding-agent": coding_agent,
        "timeout": f"{timeout:g}",
        "prompt-file": instructions.prompt_file,
        "ticket-key": instructions.ticket_key,
        "commit-message": instructions.commit_message,
    }
    spec = TaskSpec(
        steps=[
            StepSpec(
                name="clone", run=_builtin("clone", job_dir, {"repo-url": instructions.repo_url, **branches})
            ),
            StepSpec(
                name="code",
                run=_builtin("code", job_dir, code),
                needs=["clone"],
                timeout_seconds=timeout + _CODE_STEP_SLACK_SECONDS,
            ),
            *extra,
            StepSpec(
                name="bundle",
                run=_builtin("bundle", job_dir, {"commit-message": instructions.commit_message, **branches}),
                needs=["code", *(s.name for s in extra)],
            ),
        ],
        # Inside the local launcher's 5 s between its SIGTERM and SIGKILL to the agent.
        kill_grace_seconds=STEP_KILL_GRACE_SECONDS,
    )
    if TRACEPARENT.fullmatch(traceparent):
        for step in spec.steps:
            step.env = {TRACEPARENT_VARIABLE: traceparent, **step.env}
    return spec


def _builtin(step: str, job_dir: Path, options: dict[str, str]) -> str:
    """A built-in step's command line; `--name=value`, so a value may start with a dash."""
    # -P: the clone is the working directory, and nothing in it may shadow our modules.
    argv = [sys.executable, "-P", "-m", "agent_runtime.builtin_steps", step, str(job_dir.resolve())]
    return shlex.join(argv + [f"--{name}={value}" for name, value in options.items()])


def extra_steps(files: dict[str, Path]) -> list[StepSpec]:
    if STEPS_FILE not in files:
        return []
    steps = TypeAdapter(list[StepSpec]).validate_json(files[STEPS_FILE].read_bytes())
    return [step if step.needs else step.model_copy(update={"needs": ["code"]}) for step in steps]


def task_agent_result(
    task: TaskResult, job_dir: Path, instructions: TaskInstructions
) -> tuple[AgentResult, Path | None]:
    """The job's result (and its bundle, on success) from how the steps ended."""
    outcome = read_outcome(job_dir)
    if task.status is StepStatus.SUCCEEDED and outcome is not None:
        return AgentResult(
            status=AgentStatus.SUCCEEDED,
            exit_code=outcome.exit_code,
            stdout_tail=outcome.stdout_tail,
            stderr_tail=outcome.stderr_tail,
            summary=outcome.summary,
            branch=instructions.branch,
            commit_sha=Workspace(job_dir / REPO_DIR).head(),
        ), job_dir / BUNDLE_FILE
    failed = next((s for s in task.steps if s.status in (StepStatus.FAILED, StepStatus.TIMED_OUT)), None)
    if failed is None:
        return AgentResult(status=AgentStatus.FAILED, summary="the task was cancelled"), None
    if failed.name == "code" and outcome is not None:
        # The coding step knows best: "codex timed out after 1500s", "codex CLI not found on PATH".
        return AgentResult(
            status=AgentStatus.FAILED,
            failure_class=outcome.failure_class,
            summary=outcome.summary,
            exit_code=outcome.exit_code,
            stdout_tail=outcome.stdout_tail,
            stderr_tail=outcome.stderr_tail,
            no_changes=outcome.no_changes,
        ), None
    return AgentResult(
        status=AgentStatus.FAILED,
        failure_class=_failure_class(failed),
        summary=_summary(failed),
        exit_code=failed.exit_code or 0,
        stdout_tail=failed.stdout_tail[-TAIL_CHARS:],
        stderr_tail=failed.stderr_tail[-TAIL_CHARS:],
    ), None


def read_outcome(job_dir: Path) -> CodingAgentOutcome | None:
    """What the code step left in `outcome.json`, if it got that far."""
    path = job_dir / OUTCOME_FILE
    if not path.exists():
        return None
    fields = json.loads(path.read_text(encoding="utf-8"))
    return CodingAgentOutcome(**{**fields, "failure_class": FailureClass(fields["failure_class"])})


def exit_failure_class(exit_code: int | None) -> FailureClass:
    """A built-in step's exit code (sysexits, agent_runtime/builtin_steps.py) as a failure class."""
    if exit_code == EXIT_NETWORK:
        return FailureClass.NETWORK
    if exit_code == EXIT_SCRIPT:
        return FailureClass.SCRIPT
    return FailureClass.INFRASTRUCTURE


def _failure_class(step: StepResult) -> FailureClass:
    if step.status is StepStatus.FAILED and step.exit_code is not None and step.name in BUILTIN_STEPS:
        return exit_failure_class(step.exit_code)
    return step.failure_class


def _summary(step: StepResult) -> str:
    if step.status is StepStatus.TIMED_OUT:
        return f"step {step.name!r} timed out after {step.duration_seconds:.0f}s"
    said = _last_line(step.stderr_tail) or _last_line(step.stdout_tail)
    return f"step {step.name!r} failed (exit code {step.exit_code})" + (f": {said}" if said else "")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:500] if lines else ""
