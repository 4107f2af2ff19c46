"""A task as a DAG of shell steps: what the agent runs, and what each step and the whole task came to."""

from enum import StrEnum

from pydantic import BaseModel, Field

from contracts.jobs import FailureClass


class StepSpec(BaseModel):
    """One shell command line, run with `/bin/sh -c` in the job's work directory."""

    # Names appear in logs, cycle messages and file names: keep them to one plain token.
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    run: str
    # The step starts only when every step named here has SUCCEEDED.
    needs: list[str] = Field(default_factory=list)
    timeout_seconds: float | None = Field(default=None, gt=0)
    # Added to (and overriding) the agent's own environment.
    env: dict[str, str] = Field(default_factory=dict)


class TaskSpec(BaseModel):
    steps: list[StepSpec]
    max_parallel: int = Field(default=4, ge=1)
    # Between SIGTERM and SIGKILL when a step times out or the task is cancelled.
    kill_grace_seconds: float = Field(default=5.0, ge=0)


class StepStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"
    CANCELLED = "CANCELLED"
    # Never started because a step it needs (directly or not) failed or timed out.
    SKIPPED = "SKIPPED"


class StepResult(BaseModel):
    name: str
    status: StepStatus
    # None when the step never ran or its process could not be started; negative: killed by that signal.
    exit_code: int | None = None
    stdout_tail: str = ""
    stderr_tail: str = ""
    duration_seconds: float = 0.0
    # Unix time (seconds) when the step's process was started; 0 when it never started.
    started_at: float = 0.0
    failure_class: FailureClass = FailureClass.NONE
    # For SKIPPED: the failed (or timed-out) ancestor that stopped this step.
    skipped_because: str = ""


class TaskResult(BaseModel):
    # SUCCEEDED only if every step did; CANCELLED if the task was cancelled; FAILED otherwise.
    status: StepStatus
    # In the order of TaskSpec.steps.
    steps: list[StepResult] = Field(default_factory=list)
    failure_class: FailureClass = FailureClass.NONE
