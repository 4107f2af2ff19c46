"""Inputs, signals and queries of the per-account incident chain workflow (`alarms/<account>`)."""

from pydantic import BaseModel, Field

from contracts.alarms import AccountChains, Alarm, ChainPolicy, Placement
from contracts.status import REPORT_TEXT_LIMIT, IncidentReportState


class IncidentChainInput(BaseModel):
    account: str
    policy: ChainPolicy = Field(default_factory=ChainPolicy)
    task_queue: str = ""
    # Carried across continue-as-new: the chains, alarms not yet processed, and per-chain dossiers.
    chains: AccountChains | None = None
    pending: list[Alarm] = Field(default_factory=list)
    dossiers: dict[str, list[Alarm]] = Field(default_factory=dict)
    decisions: list["Decision"] = Field(default_factory=list)
    runs: int = 0
    # Continue-as-new after placing this many alarms in one run (sooner if the server suggests it);
    # the property tests make it small so every few steps cross a run boundary.
    alarms_per_run: int = Field(default=1000, ge=1)
    # Keep one GitHub issue per chain in its routed repository with the jobs' outcomes (config).
    incident_reports: bool = False
    # Per chain that has one: what its report holds; and the chains whose report is due (carried).
    reports: dict[str, IncidentReportState] = Field(default_factory=dict)
    reports_due: list[str] = Field(default_factory=list)


class JobFinished(BaseModel):
    """Signal from an incident's agent job to its account workflow: how the job ended."""

    chain_id: str
    job_id: str
    state: str
    reason: str = ""
    # For the chain's report issue: the routed GitHub repository (empty: not on GitHub), the attempt,
    # the agent's final report and the pull request.
    github_repo: str = ""
    attempt: int = 1
    report: str = Field(default="", max_length=REPORT_TEXT_LIMIT)
    pr_url: str = ""


class Decision(BaseModel):
    """One alarm's placement, kept (bounded) for `status` and `conductor simulate`."""

    event_id: str
    alarm_name: str
    state: str
    event_time: str
    placement: Placement
    spawned_job_id: str = ""


class IncidentChainStatus(BaseModel):
    """The `status` query's answer."""

    account: str
    chains: AccountChains
    pending: int
    runs: int
    recent_decisions: list[Decision] = Field(default_factory=list)
