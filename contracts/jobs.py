"""Agent jobs: their spec, states, the agent's result and the job's result."""

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field

from contracts.agent_events import AgentEvent
from contracts.alarms import Alarm
from contracts.failures import FailureClass
from contracts.policies import JobPolicy
from contracts.routing import RepoRoute
from contracts.tickets import TicketMessage
from contracts.usage import ModelUsage


class JobState(StrEnum):
    QUEUED = "QUEUED"
    # The model gateway holds the agent's next model request: the job's token budget is spent.
    AWAITING_APPROVAL = "AWAITING_APPROVAL"
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
    # The coding agent finished without changing anything; its final message is the note on the ticket.
    NO_CHANGES = "NO_CHANGES"


class AgentStatus(StrEnum):
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


class WorkItem(BaseModel):
    """What a job is about, in the words a person (and a PR) needs: a ticket, an incident chain, or a
    schedule's recurring task."""

    kind: Literal["ticket", "incident", "scheduled"]
    # `ENG-123`, or an incident's short key such as `incident-204772699175-20260512T200000Z`.
    key: str
    summary: str
    url: str = ""
    description: str = ""
    # The whole description in the conductor's blob store when `description` was cut (contracts/tickets.py).
    description_blob: str = ""


def ticket_work_item(ticket: TicketMessage) -> WorkItem:
    return WorkItem(
        kind="ticket",
        key=ticket.key,
        summary=ticket.summary,
        url=ticket.url,
        description=ticket.description,
        description_blob=ticket.description_blob,
    )


class JobSpec(BaseModel):
    """Everything an agent job needs; built by the ticket workflow or the incident chain workflow."""

    job_id: str
    work: WorkItem
    # None for incidents: the job routes itself by account, so an unroutable account fails visibly here.
    route: RepoRoute | None = None
    branch: str
    # From config per job kind; None for incidents until the job has routed itself.
    policy: JobPolicy | None = None
    ticket: TicketMessage | None = None
    # Incidents: the account and the alarms known when the job was launched (its dossier grows later).
    account: str = ""
    alarms: list[Alarm] = Field(default_factory=list)
    # Where the job reports its end (incident chains track their job's outcome); empty for tickets.
    notify_workflow_id: str = ""
    chain_id: str = ""
    # Keep one live status comment on the ticket (contracts/status.py); set by the ticket's routing.
    status_comments: bool = False


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
    # The git bundle's key in the blob store (stores/attempts.py) and its sha256, checked by the publisher;
    # empty when the agent made no change.
    bundle_key: str = ""
    bundle_sha256: str = ""
    # Where a conductor from before the blob store kept the bundle on its own disk (recorded histories).
    bundle_path: str = ""
    # The attempt's model usage as the model gateway counted it (CLI coding agents only).
    model_usage: ModelUsage | None = None
    # FAILED because the coding agent finished (exit 0) without changing the clone.
    no_changes: bool = False


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
    # Incidents: how many alarms the job has been given, and the most recent of them.
    dossier_count: int = 0
    dossier_recent: list[Alarm] = Field(default_factory=list)
    # The repository's claim workflow; while QUEUED, its `position` query tells the job's place in line.
    claim_workflow_id: str = ""
    # Operator instructions sent with the `steer` update, in order.
    steering: list[str] = Field(default_factory=list)
    # Where failure notes were left (ticket comment, pull request comment).
    notes: list[str] = Field(default_factory=list)
    # What the running agent last reported: its steps' states and its last log lines.
    progress: "AgentProgress | None" = None


class AgentProgress(BaseModel):
    """Relayed from the agent's heartbeats and logs by the result watcher."""

    steps: dict[str, str] = Field(default_factory=dict)
    last_lines: list[str] = Field(default_factory=list)
    # The attempt's model usage so far, as the model gateway counted it (CLI coding agents only).
    model_usage: ModelUsage | None = None
    # The coding agent's latest events (CLI coding agents only), oldest first.
    events: list[AgentEvent] = Field(default_factory=list)
