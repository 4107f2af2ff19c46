"""Recurring agent work on Temporal Schedules: what a schedule starts, and the ids its runs get."""

from datetime import datetime

from pydantic import BaseModel, Field

from contracts.policies import JobPolicy
from contracts.routing import RepoRoute

# A schedule's name is part of its workflow ids and branches: lowercase, digits and dashes.
NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
# The prompt travels in the schedule's action (a Temporal payload, 2 MB at most) and in every run's input.
PROMPT_LIMIT = 64 * 1024


class ScheduledJob(BaseModel):
    """The input every run of a schedule starts with: fixed when the schedule is created."""

    name: str = Field(pattern=NAME_PATTERN)
    summary: str = Field(min_length=1, max_length=200)
    prompt: str = Field(min_length=1, max_length=PROMPT_LIMIT)
    route: RepoRoute
    policy: JobPolicy


def schedule_id(name: str) -> str:
    """`schedule/deps-weekly`; Temporal starts each run as `schedule/deps-weekly-<scheduled time>`."""
    return f"schedule/{name}"


def run_stamp(at: datetime) -> str:
    """A run's scheduled time as ids and git branches can carry it (no `:`): `20261130T060000Z`."""
    return at.strftime("%Y%m%dT%H%M%SZ")


def scheduled_job_id(name: str, at: datetime) -> str:
    return f"job/schedule/{name}/{run_stamp(at)}"


def scheduled_branch(name: str, at: datetime) -> str:
    return f"conductor/schedule/{name}/{run_stamp(at)}"
