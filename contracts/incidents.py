"""Inputs, signals and queries of the per-account incident chain workflow (`alarms/<account>`)."""

from pydantic import BaseModel, Field

from contracts.alarms import AccountChains, Alarm, ChainPolicy, Placement


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


class JobFinished(BaseModel):
    """Signal from an incident's agent job to its account workflow: how the job ended."""

    chain_id: str
    job_id: str
    state: str
    reason: str = ""


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
