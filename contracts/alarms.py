"""CloudWatch alarms and incident chains as the conductor understands them."""

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from pydantic import AwareDatetime, BaseModel, Field


class AlarmState(StrEnum):
    ALARM = "ALARM"
    OK = "OK"
    INSUFFICIENT_DATA = "INSUFFICIENT_DATA"


class Alarm(BaseModel):
    """One alarm state change, normalized from any of the three delivery shapes."""

    account: str = Field(pattern=r"^[0-9]{12}$")
    region: str = ""
    alarm_name: str = Field(min_length=1)
    state: AlarmState
    previous_state: str = ""
    reason: str = ""
    # The alarm's own event time (state change time), never the time we received it.
    event_time: AwareDatetime
    alarm_arn: str = ""

    @property
    def event_id(self) -> str:
        """The same transition delivered twice (or in two shapes) has one id."""
        return f"{self.account}/{self.alarm_name}/{self.state}/{self.event_time.isoformat()}"


class ChainPolicy(BaseModel):
    """The chain rule's knobs (README "Incident chains")."""

    window: timedelta = timedelta(hours=1)
    max_age: timedelta = timedelta(hours=24)
    # What a new ALARM on a chain whose job failed does: spawn another job (bounded) or only record.
    on_failed_job: Literal["respawn", "hold"] = "hold"
    max_jobs_per_chain: int = Field(default=2, ge=1)


class Chain(BaseModel):
    """An incident: ALARMs of one account, each within `window` of the chain, by event time."""

    chain_id: str
    account: str
    # Event time of the first ALARM the chain saw (its id is built from it; it never changes).
    opened_at: AwareDatetime
    # Earliest and latest ALARM event times in the chain (a late, out-of-order alarm may move `earliest`).
    earliest_at: AwareDatetime
    latest_at: AwareDatetime
    alarm_count: int = 0
    # OK / INSUFFICIENT_DATA transitions recorded on the chain; they never spawn.
    other_transitions: int = 0
    jobs_started: int = 0
    last_job_id: str = ""
    last_job_state: str = ""


class PlacementKind(StrEnum):
    DUPLICATE = "duplicate"  # already counted
    RECORDED = "recorded"  # OK / INSUFFICIENT_DATA: noted on a chain (if one covers it), never spawns
    JOINED = "joined"  # an ALARM added to an existing chain
    OPENED = "opened"  # an ALARM that starts a new chain


class Placement(BaseModel):
    kind: PlacementKind
    # The chain the event was placed on; None for a RECORDED event no chain covers, and for DUPLICATE.
    chain_id: str | None = None


class AccountChains(BaseModel):
    """All chain state of one account; the per-account workflow carries it across continue-as-new."""

    account: str
    chains: list[Chain] = Field(default_factory=list)
    # Event ids of recent events, for dedup; pruned with the chains they belong to.
    seen: dict[str, datetime] = Field(default_factory=dict)
    latest_event_at: AwareDatetime | None = None
    alarms_total: int = 0
    duplicates_total: int = 0
    other_transitions_total: int = 0


class AlarmBatch(BaseModel):
    """Alarms delivered to a workflow in one signal."""

    alarms: list[Alarm]
