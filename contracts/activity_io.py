"""One input and one result model per activity (new fields get defaults, so old histories decode)."""

from pydantic import BaseModel

from contracts.alarms import Alarm
from contracts.claims import ClaimRequest
from contracts.jobs import AgentResult, JobSpec, JobState
from contracts.policies import JobPolicy
from contracts.routing import RepoRoute
from contracts.tickets import TicketMessage


class RouteTicketInput(BaseModel):
    ticket: TicketMessage


class RouteTicketResult(BaseModel):
    route: RepoRoute
    policy: JobPolicy = JobPolicy()
    # The conductor can comment on this ticket's source and status comments are on (config).
    status_comments: bool = False


class RouteIncidentInput(BaseModel):
    account: str


class RouteIncidentResult(BaseModel):
    route: RepoRoute
    policy: JobPolicy = JobPolicy()


class StageTaskFilesInput(BaseModel):
    spec: JobSpec
    attempt: int


class StageTaskFilesResult(BaseModel):
    files: list[str]


class LaunchAgentInput(BaseModel):
    job_id: str
    attempt: int
    # The route's agent_image: an ECS task definition for `fargate` (empty: the configured default).
    agent_image: str = ""


class LaunchAgentResult(BaseModel):
    # Launcher-specific handle: a pid for `local`, a task ARN for `fargate`.
    agent_id: str
    launcher: str
    # The local launcher's sandbox (`bwrap`, or `unsafe` when the operator turned it off); empty elsewhere.
    sandbox: str = ""
    # The launching conductor's own task queue, for what needs its host (the local agent's watch and
    # stop); empty when any replica can do that (Fargate: DescribeTasks and StopTask work from anywhere).
    host_task_queue: str = ""
    # How long the agent may stay silent (three of its heartbeat intervals): the await activity's heartbeat
    # timeout. 0 (a launch recorded before the agent channel): the job workflow's default.
    heartbeat_timeout_seconds: float = 0


AGENT_WATCH_ID_PREFIX = "agent-attempt-"


def agent_watch_activity_id(attempt: int) -> str:
    """The id of a job attempt's await activity: the gateway heartbeats and completes it by this id and
    the job's workflow id (the job id), so any replica's gateway can, and an ended attempt's cannot."""
    return f"{AGENT_WATCH_ID_PREFIX}{attempt}"


class AgentChannelState(BaseModel):
    """The job workflow's `agent_channel` query: what the gateway needs when Temporal does not know an
    attempt's await activity (not scheduled yet, between two of its tries, or ended)."""

    attempt: int
    # The attempt still expects its agent: launching or running, neither cancelled nor over budget.
    open: bool
    # The await activity's id; empty for a run from before the agent channel (its id was assigned).
    activity_id: str = ""


class AwaitAgentInput(BaseModel):
    job_id: str
    attempt: int
    agent_id: str


class StopAgentInput(BaseModel):
    job_id: str
    attempt: int
    agent_id: str
    reason: str = ""


class PublishInput(BaseModel):
    spec: JobSpec
    result: AgentResult


class PublishResult(BaseModel):
    branch: str
    commit_sha: str
    pr_url: str | None = None
    pr_number: int | None = None


class RequestClaimInput(BaseModel):
    repo_url: str
    request: ClaimRequest


class ClosedWorkflowsInput(BaseModel):
    workflow_ids: list[str]


class ClosedWorkflowsResult(BaseModel):
    # The ones not running any more (or never found).
    workflow_ids: list[str]


class FailureNoteInput(BaseModel):
    spec: JobSpec
    attempt: int
    state: JobState
    reason: str
    result: AgentResult | None = None
    # Who cancelled (for CANCELLED); shown in the note.
    by: str = ""
    # AWAITING_APPROVAL: the tokens the attempt had used when its budget was found spent (one note per pause).
    used_tokens: int = 0
    # False when the job's status comment carries the note on the ticket: then only the PR gets one.
    on_ticket: bool = True


class FailureNoteResult(BaseModel):
    # Where the note went, e.g. "jira ENG-123 comment 10001", "github acme/widgets#7 comment 3".
    left_at: list[str]


class DeliverSteeringInput(BaseModel):
    job_id: str
    seq: int
    text: str
    by: str


class DeliverSteeringResult(BaseModel):
    # How long the `steer` update may wait for a model request of the running agent to carry the entry
    # (the conductor's steering_delivery_wait_seconds; 0 when no model gateway serves its agents).
    delivery_wait_seconds: float = 0.0


class DeliverAlarmsInput(BaseModel):
    job_id: str
    alarms: list[Alarm]


class AwaitSteeringDeliveryInput(BaseModel):
    job_id: str
    attempt: int
    seq: int
