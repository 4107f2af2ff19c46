"""Agent jobs: their spec, states, the agent's result and the job's result."""

from enum import StrEnum

from pydantic import BaseModel, Field

from contracts.routing import RepoRoute
from contracts.tickets import TicketMessage


class JobState(StrEnum):
    QUEUED = "QUEUED"
    LAUNCHING = "LAUNCHING"
    AWAITING_HANDSHAKE = "AWAITING_HANDSHAKE"
    STREAMING_FILES = "STREAMING_FILES"
    RUNNING = "RUNNING"
    PUBLISHING = "PUBLISHING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    CRASHED = "CRASHED"
    TIMED_OUT = "TIMED_OUT"


class AgentStatus(StrEnum):
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


class FailureClass(StrEnum):
    NONE = "none"
    SCRIPT = "script"
    NETWORK = "network"
    INFRASTRUCTURE = "infrastructure"


class JobSpec(BaseModel):
    """Everything an agent job needs; built by the ticket (or incident) workflow."""

    job_id: str
    kind: str = "ticket"
    ticket: TicketMessage
    route: RepoRoute
    branch: str
    # How long the agent may work before the job is TIMED_OUT.
    agent_timeout_seconds: int = 1800


class TaskFile(BaseModel):
    """A file the agent downloads before it starts; path is relative and checked by the agent."""

    path: str
    content: str


class TaskInstructions(BaseModel):
    """`job.json`, the machine-readable task file every per-job agent reads."""

    job_id: str
    ticket_key: str
    repo_url: str
    base_branch: str
    branch: str
    prompt_file: str = "prompt.md"
    commit_message: str


class AgentResult(BaseModel):
    """What the agent reported, as stored by the gateway."""

    status: AgentStatus
    exit_code: int = 0
    stdout_tail: str = ""
    stderr_tail: str = ""
    summary: str = ""
    failure_class: FailureClass = FailureClass.NONE
    branch: str = ""
    commit_sha: str = ""
    duration_seconds: float = 0.0
    # Where the conductor stored the uploaded git bundle; empty when the agent made no change.
    bundle_path: str = ""
    bundle_sha256: str = ""


class JobResult(BaseModel):
    """The agent job workflow's result: where the work went."""

    job_id: str
    state: JobState
    attempt: int = 1
    branch: str = ""
    commit_sha: str = ""
    pr_url: str | None = None
    summary: str = ""
    reason: str = ""
    agent: AgentResult | None = None


class JobStatus(BaseModel):
    """The `status` query's answer."""

    job_id: str
    state: JobState
    attempt: int
    agent_id: str = ""
    branch: str = ""
    pr_url: str | None = None
    reason: str = ""
    history: list[str] = Field(default_factory=list)
