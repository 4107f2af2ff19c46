"""`conductor simulate`'s reading of the `alarms/<account>` workflows: every placement, in order.

The `status` query answers with the chains and only the last DECISIONS_KEPT decisions. So the simulator
reads each account's log whenever half of it is new, and before the workflow could end idle (after
`max_age + window` without alarms; a later alarm then starts a fresh workflow with fresh totals).
Placements lost anyway are flagged as such, never guessed.
"""

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from contracts.alarms import Alarm, Chain, PlacementKind
from contracts.ids import account_workflow_id
from contracts.incidents import Decision, IncidentChainStatus
from workflows.incident_chain import DECISIONS_KEPT, IncidentChainWorkflow

# Real seconds to wait for an account workflow to place the alarms already signalled to it.
PLACE_TIMEOUT = 60.0
# Real seconds between two reads of `status`; equal answers in a row mean the turn is over.
REREAD_AFTER = 0.05
QUERY_RPC_TIMEOUT = timedelta(seconds=20)
# A query that ran out of time (the client's own timeout, or the server's) has not been answered yet: on a
# loaded machine the workflow's outstanding task can take longer than one query's bound.
_UNANSWERED = (RPCStatusCode.CANCELLED, RPCStatusCode.DEADLINE_EXCEEDED)


@dataclass
class AccountLog:
    # Alarms signalled to the current workflow (continue-as-new keeps its totals; ending idle resets them),
    # and how many of its placements have been read.
    delivered: int = 0
    read: int = 0
    last_delivery: datetime | None = None
    may_have_ended: bool = False
    decisions: list[Decision] = field(default_factory=list)
    lost_decisions: bool = False
    # The latest snapshot of every chain seen, so a chain the workflow later forgets (prunes) still reports.
    chains: dict[str, Chain] = field(default_factory=dict)


@dataclass
class ChainMembers:
    """Per chain id: the numbers of the messages placed on it, and the event ids of its ALARMs."""

    messages: dict[str | None, list[int]] = field(default_factory=lambda: defaultdict(list))
    alarm_ids: dict[str | None, list[str]] = field(default_factory=lambda: defaultdict(list))


class ChainLogs:
    def __init__(self, client: Client, idle_limit: timedelta) -> None:
        self._client = client
        self._idle_limit = idle_limit
        self.accounts: dict[str, AccountLog] = {}
        # Message numbers per alarm event id, in delivery order (a duplicate shares its original's id).
        self.event_messages: dict[str, list[int]] = defaultdict(list)

    async def before_sleep(self, until: datetime) -> None:
        for account, log in self.accounts.items():
            if log.last_delivery is not None and log.last_delivery + self._idle_limit <= until:
                if log.delivered > log.read:
                    await self.read(account, wait=True)
                log.may_have_ended = True

    async def before_delivery(self, alarm: Alarm) -> None:
        log = self.accounts.setdefault(alarm.account, AccountLog())
        if log.may_have_ended:
            log.may_have_ended = False
            handle = self._client.get_workflow_handle(account_workflow_id(alarm.account))
            if (await handle.describe()).status != WorkflowExecutionStatus.RUNNING:
                log.delivered = log.read = 0  # this alarm starts a fresh workflow

    async def delivered(self, alarm: Alarm, number: int, at: datetime) -> None:
        log = self.accounts[alarm.account]
        self.event_messages[alarm.event_id].append(number)
        log.delivered += 1
        log.last_delivery = at
        if log.delivered - log.read >= DECISIONS_KEPT // 2:
            await self.read(alarm.account, wait=True)

    async def read(self, account: str, wait: bool) -> bool:
        """Copy the placements not read yet; False if the workflow is not done with every delivered alarm."""
        log = self.accounts[account]
        handle = self._client.get_workflow_handle(account_workflow_id(account))
        deadline = time.monotonic() + PLACE_TIMEOUT
        previous = None
        while True:
            # Bounded: a query waits for the workflow's outstanding task, which may never complete.
            try:
                status = await handle.query(IncidentChainWorkflow.status, rpc_timeout=QUERY_RPC_TIMEOUT)
            except RPCError as err:
                if err.status not in _UNANSWERED:
                    raise
                if not wait:
                    return False
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{account_workflow_id(account)} answered no status query") from err
                continue
            # A query can land while a turn awaits a job's start: the alarm is counted, its decision not yet
            # logged. Such a chain shows no job yet; two equal answers in a row rule out the rest.
            if status == previous and _turn_done(status, log.delivered):
                break
            if not wait and previous is not None:
                return False
            if time.monotonic() > deadline:
                raise TimeoutError(f"{account_workflow_id(account)} did not place all {log.delivered} alarms")
            previous = status
            await asyncio.sleep(REREAD_AFTER)
        placed = _placed(status)
        recent = status.recent_decisions
        first = placed - len(recent)  # the placement number of recent[0]
        log.lost_decisions |= first > log.read
        log.decisions += recent[max(0, log.read - first) :]
        log.read = placed
        log.chains.update({chain.chain_id: chain for chain in status.chains.chains})
        return True

    async def unsettled(self) -> list[str]:
        """What keeps the accounts from being quiet: alarms not yet placed, chains whose job still runs."""
        waiting = []
        for account, log in self.accounts.items():
            if not await self.read(account, wait=False):
                waiting.append(f"{account_workflow_id(account)}: alarms not all placed")
                continue
            waiting += [
                f"{chain.chain_id}: job {chain.last_job_id} RUNNING"
                for chain in log.chains.values()
                if chain.last_job_state == "RUNNING"
            ]
        return waiting

    def members(self, account: str) -> ChainMembers:
        # Decisions of one event id come in delivery order, so they take that id's message numbers in turn.
        queues = {event_id: list(numbers) for event_id, numbers in self.event_messages.items()}
        event_chain: dict[str, str | None] = {}
        out = ChainMembers()
        for decision in self.accounts[account].decisions:
            numbers = queues.get(decision.event_id)
            # A duplicate has no chain of its own: it belongs where its original went.
            chain_id = event_chain.setdefault(decision.event_id, decision.placement.chain_id)
            if numbers:
                out.messages[chain_id].append(numbers.pop(0))
            if decision.placement.kind in (PlacementKind.OPENED, PlacementKind.JOINED):
                out.alarm_ids[chain_id].append(decision.event_id)
        return out


def _placed(status: IncidentChainStatus) -> int:
    """Every delivered alarm is placed exactly once: as an ALARM, another transition, or a duplicate."""
    chains = status.chains
    return chains.alarms_total + chains.other_transitions_total + chains.duplicates_total


def _turn_done(status: IncidentChainStatus, delivered: int) -> bool:
    # Every chain starts its first job in the turn that opens it.
    return _placed(status) >= delivered and all(chain.jobs_started > 0 for chain in status.chains.chains)
