"""One input and one result model per activity (new fields get defaults, so old histories decode)."""

from pydantic import BaseModel

from contracts.jobs import AgentResult, JobSpec
from contracts.routing import RepoRoute
from contracts.tickets import TicketMessage


class RouteTicketInput(BaseModel):
    ticket: TicketMessage


class RouteTicketResult(BaseModel):
    route: RepoRoute


class RouteIncidentInput(BaseModel):
    account: str


class RouteIncidentResult(BaseModel):
    route: RepoRoute


class StageTaskFilesInput(BaseModel):
    spec: JobSpec
    attempt: int


class StageTaskFilesResult(BaseModel):
    files: list[str]


class LaunchAgentInput(BaseModel):
    job_id: str
    attempt: int


class LaunchAgentResult(BaseModel):
    # Launcher-specific handle: a pid for `local`, a task ARN for `fargate`.
    agent_id: str
    launcher: str


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
