"""Pool agents (seed 003): registration, script tasks, the agent's reports and the structured result.

Shared by the pool and script-task workflows, their activity, the REST API and `conductor-agent pool`.
The REST bodies are the seed's (`status`, `stdout`, `stderr`, `exit_code`), with optional extras.
"""

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints

from contracts.jobs import FailureClass

# Agent ids, task ids and capabilities appear in workflow ids, URLs and logs: one plain token each.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
CAPABILITY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
Capability = Annotated[str, StringConstraints(pattern=CAPABILITY_PATTERN)]
# The registry of agents (operators' view; claims never depend on it) is carried whole across the pool's
# continue-as-new, one payload Temporal refuses over 2 MB: 13,500 agent ids (every agent restart is a new
# `<host>-<pid>`) once wedged the pool for good. So it is bounded in count and in bytes, both far below.
MAX_POOL_AGENTS = 1000
REGISTRY_BYTES_LIMIT = 256 * 1024
# Reports carry at most this much of each stream (the agent keeps the end, like a terminal would):
# one report is one Temporal payload, and payloads over 2 MB are refused.
OUTPUT_LIMIT = 256 * 1024
# The queue is carried whole across continue-as-new too: bounded in tasks and in script bytes. A task that
# does not fit waits in its own workflow (its submit is refused and retried), so nothing is lost.
SCRIPT_LIMIT = 64 * 1024
MAX_QUEUED_TASKS = 1000
QUEUE_BYTES_LIMIT = 512 * 1024
BEAT_SECONDS = 5.0
DEFAULT_LEASE_SECONDS = 30.0
DEFAULT_QUEUE_TIMEOUT_SECONDS = 600.0
DEFAULT_MAX_ATTEMPTS = 3


def pool_workflow_id(task_queue: str) -> str:
    """One pool per conductor task queue: every conductor process polling that queue serves it."""
    return f"agent-pool/{task_queue}"


def script_workflow_id(task_id: str) -> str:
    return f"script/{task_id}"


class AgentRegistration(BaseModel):
    """`POST /api/v1/agents/register` body (seed 003, plus `max_concurrency`)."""

    agent_id: str = Field(pattern=NAME_PATTERN)
    instance_id: str = Field(default="", max_length=128)
    capabilities: list[Capability] = Field(min_length=1, max_length=32)
    max_concurrency: int = Field(default=1, ge=1, le=256)


class Registered(BaseModel):
    """The register response: the bearer token for every later call, bound to `agent_id`."""

    agent_id: str
    token: str
    expires_at: datetime
    beat_seconds: float = BEAT_SECONDS


class ScriptTask(BaseModel):
    """What an agent runs: `GET /api/v1/tasks` returns it (seed: `task_id`, `script`)."""

    task_id: str = Field(pattern=NAME_PATTERN)
    script: str = Field(max_length=SCRIPT_LIMIT)
    capability: str = "shell"
    timeout_seconds: float = Field(default=600, gt=0)


class ReportStatus(StrEnum):
    RUNNING = "running"  # a liveness beat: extends the task's lease, nothing else
    COMPLETED = "completed"
    FAILED = "failed"
    TIMED_OUT = "timed_out"  # the agent stopped the script at its timeout


class TaskReport(BaseModel):
    """`POST /api/v1/tasks/{task_id}/status` body (seed 003; the last two fields are optional extras)."""

    status: ReportStatus
    stdout: str = Field(default="", max_length=OUTPUT_LIMIT)
    stderr: str = Field(default="", max_length=OUTPUT_LIMIT)
    exit_code: int | None = None
    # The agent measured it; without it the workflow uses claim-to-report time.
    duration_seconds: float | None = Field(default=None, ge=0)
    # `infrastructure` when the agent could not start the script at all; default: from `status`.
    failure_class: FailureClass | None = None


class ScriptStatus(StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"
    TIMED_OUT = "timed_out"


class ScriptResult(BaseModel):
    """The structured result seed 003 asks for: what ran where, how it ended, and why if it failed."""

    task_id: str
    agent_id: str = ""
    status: ScriptStatus
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    duration_seconds: float = 0.0
    failure_class: FailureClass = FailureClass.NONE
    # Claims it took: more than 1 when an agent was lost mid-task and the task was requeued.
    attempts: int = 0
    reason: str = ""


# Workflow messages -------------------------------------------------------------------------------


class ScriptProgress(BaseModel):
    """Where a script workflow stands: the attempt, who holds it and until when."""

    attempt: int = 0
    agent_id: str = ""
    claimed_at: datetime | None = None
    lease_until: datetime | None = None
    # One line per agent lost on an earlier attempt.
    lost: list[str] = Field(default_factory=list)


class ScriptTaskInput(BaseModel):
    task: ScriptTask
    # A claimed task whose agent sends no beat for this long is lost: requeued, or failed when out of
    # attempts. Beats come every BEAT_SECONDS, so the default tolerates 5 missed beats.
    lease_seconds: float = Field(default=DEFAULT_LEASE_SECONDS, gt=0)
    max_attempts: int = Field(default=DEFAULT_MAX_ATTEMPTS, ge=1)
    # How long the task may wait for an agent with its capability before it fails.
    queue_timeout_seconds: float = Field(default=DEFAULT_QUEUE_TIMEOUT_SECONDS, gt=0)
    # Carried across continue-as-new (a long script's beats fill one run's history).
    progress: ScriptProgress | None = None


class QueuedTask(BaseModel):
    """A task in the pool's FIFO; `attempt` tells a requeue from a repeated submit of the same claim."""

    task: ScriptTask
    attempt: int
    enqueued_at: datetime | None = None


class SubmitInput(BaseModel):
    queued: QueuedTask


class Withdrawal(BaseModel):
    """Script workflow -> pool: the task gave up waiting; drop it from the queue."""

    task_id: str


class PoolAgent(BaseModel):
    instance_id: str = ""
    capabilities: list[str] = Field(default_factory=list)
    max_concurrency: int = 1
    registered_at: datetime
    last_claim_at: datetime | None = None


def registry_entry_bytes(agent_id: str, agent: PoolAgent) -> int:
    """What one registry entry adds to the pool's state payload (its JSON, near enough)."""
    return len(agent_id) + len(agent.model_dump_json()) + 8


class PoolState(BaseModel):
    """Everything the pool workflow holds; carried whole across continue-as-new."""

    queue: list[QueuedTask] = Field(default_factory=list)
    agents: dict[str, PoolAgent] = Field(default_factory=dict)
    # task id -> highest attempt handed out, so a repeated submit of a claimed attempt is ignored.
    handed_out: dict[str, int] = Field(default_factory=dict)
    runs: int = 0
    # Messages (submits, claims, registrations) one run takes before it continues as new.
    messages_per_run: int = Field(default=500, ge=1)


class Claim(BaseModel):
    """A poll: the `claim` update's argument. Capabilities come from the agent's signed token."""

    agent_id: str
    capabilities: list[str]


class Assignment(BaseModel):
    """Pool -> script workflow: this attempt of the task is now with this agent."""

    agent_id: str
    attempt: int


class AgentReport(BaseModel):
    """REST -> script workflow (`report` update): the agent is taken from its token, never the body."""

    agent_id: str
    report: TaskReport


class ReportAck(BaseModel):
    accepted: bool = True
    # Seconds left before the task's lease runs out without another beat.
    lease_seconds: float = 0.0


class ScriptTaskStatus(BaseModel):
    """The script workflow's `status` query."""

    task_id: str
    state: str
    attempt: int
    agent_id: str = ""


class PoolStatus(BaseModel):
    """The pool workflow's `status` query."""

    queued: int
    queued_by_capability: dict[str, int]
    agents: dict[str, PoolAgent]
    runs: int
