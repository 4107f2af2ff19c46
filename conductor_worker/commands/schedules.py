"""Recurring agent jobs on Temporal Schedules: create, list, pause, unpause, delete.

A schedule starts `ScheduledJobWorkflow` on the conductor's task queue; Temporal keeps the schedule (its
cron, its paused state, its recent runs), so nothing here survives in the conductor. Runs never overlap
(a run still going when the next is due makes the schedule skip that one), and a run missed by more than
CATCHUP_WINDOW (the server was down) is skipped rather than started late.
"""

from dataclasses import dataclass
from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
)
from temporalio.service import RPCError

from conductor_worker.config import Settings
from contracts.routing import RepoRoute, RoutesConfig
from contracts.schedules import ScheduledJob, schedule_id
from workflows.scheduled_job import ScheduledJobWorkflow

CATCHUP_WINDOW = timedelta(hours=1)


class ScheduleError(ValueError):
    """A schedule that cannot be made as asked; the message says why."""


@dataclass
class ScheduleRow:
    name: str
    cron: str
    paused: bool
    next_run: str
    note: str

    def line(self) -> str:
        state = "paused" if self.paused else "active"
        note = f"  ({self.note})" if self.note else ""
        return f"{self.name:<24} {self.cron:<20} {state:<7} next: {self.next_run}{note}"


def find_route(routes: RoutesConfig, name: str) -> RepoRoute:
    """A route of the routes file by its `name` (as tickets and accounts use it)."""
    named = {rule.route.name: rule.route for rule in [*routes.tickets, *routes.accounts] if rule.route.name}
    if name not in named:
        known = ", ".join(sorted(named)) or "none: give routes a `name`"
        raise ScheduleError(f"no route named {name!r} in the routes file (named routes: {known})")
    return named[name]


async def create_schedule(
    client: Client, settings: Settings, job: ScheduledJob, cron: str, time_zone: str, paused: bool
) -> None:
    action = ScheduleActionStartWorkflow(
        ScheduledJobWorkflow.run, job, id=schedule_id(job.name), task_queue=settings.task_queue
    )
    schedule = Schedule(
        action=action,
        spec=ScheduleSpec(cron_expressions=[cron], time_zone_name=time_zone),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=CATCHUP_WINDOW),
        state=ScheduleState(paused=paused, note="created paused" if paused else None),
    )
    try:
        # The server compiles a cron expression into calendars; the memo keeps it as it was written.
        await client.create_schedule(
            schedule_id(job.name), schedule, memo={"cron": cron, "time_zone": time_zone}
        )
    except ScheduleAlreadyRunningError:
        raise ScheduleError(f"a schedule named {job.name!r} exists: delete it first") from None
    except RPCError as err:  # the server checks the cron expression and the time zone
        raise ScheduleError(f"Temporal refused the schedule: {err.message}") from None


async def list_schedules(client: Client) -> list[ScheduleRow]:
    rows = []
    async for listed in await client.list_schedules():
        if not listed.id.startswith(schedule_id("")):
            continue
        info, state = listed.info, listed.schedule.state if listed.schedule else None
        rows.append(
            ScheduleRow(
                name=listed.id.removeprefix(schedule_id("")),
                cron=f"{await listed.memo_value('cron', '-')} ({await listed.memo_value('time_zone', 'UTC')})",
                paused=bool(state and state.paused),
                next_run=info.next_action_times[0].isoformat() if info and info.next_action_times else "-",
                note=(state.note or "") if state else "",
            )
        )
    return sorted(rows, key=lambda row: row.name)


async def pause_schedule(client: Client, name: str, note: str) -> None:
    await _checked(client.get_schedule_handle(schedule_id(name)).pause(note=note), name)


async def unpause_schedule(client: Client, name: str, note: str) -> None:
    await _checked(client.get_schedule_handle(schedule_id(name)).unpause(note=note), name)


async def delete_schedule(client: Client, name: str) -> None:
    await _checked(client.get_schedule_handle(schedule_id(name)).delete(), name)


async def _checked(call, name: str) -> None:
    try:
        await call
    except RPCError as err:
        raise ScheduleError(f"schedule {name!r}: {err.message}") from None
