"""The token budget at the gateway: a request of an attempt that used its allowance is held for an operator.

Fast path (every request): the attempt's usage (the sum of its requests' objects in the shared blob store,
whichever replica served them: stores/usage_store.py) against its starting allowance.
Past it, the job workflow decides (workflows/job_budget.py): its `budget` query may already hold a raised
allowance; otherwise the gateway signals `budget_exceeded`, the job goes AWAITING_APPROVAL, and the request
waits, polling the query, until an operator approves (the request goes on) or refuses, or the job moves on
without an answer (the request gets an error).
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from temporalio.client import Client

from contracts.operator import BudgetExceeded, BudgetState
from model_gateway.access import JobAccess
from model_gateway.usage import UsageLedger

log = logging.getLogger(__name__)

POLL_SECONDS = 0.25


class BudgetGate:
    def __init__(self, client: Client | None, max_hold_seconds: float, ledger: UsageLedger) -> None:
        # No client (the gateway without Temporal, in tests): budgets are not enforced.
        self._client = client
        self._max_hold = max_hold_seconds
        self._ledger = ledger

    async def admit(self, access: JobAccess, gone: Callable[[], Awaitable[bool]]) -> str:
        """'' when the request may go on (perhaps after a wait); else why not, for the agent's error."""
        job = access.job
        allowance, cost_allowance = access.staged.token_budget, access.staged.cost_budget_usd
        if not (allowance or cost_allowance) or self._client is None:
            return ""
        await self._ledger.settled(job)  # the previous answers' usage is counted
        usage = await self._ledger.total(job)
        used, cost = usage.tokens, usage.cost_usd
        if not _spent(used, cost, allowance, cost_allowance):
            return ""
        handle = self._client.get_workflow_handle(job.job_id)
        state = await handle.query("budget", result_type=BudgetState)
        if not _spent(used, cost, state.allowance, state.cost_allowance_usd) and not state.awaiting_approval:
            return ""
        if state.refused:
            return "the job's token budget was refused"
        await handle.signal(
            "budget_exceeded", BudgetExceeded(attempt=job.attempt, used_tokens=used, used_cost_usd=cost)
        )
        log.info(
            "holding a model request of %s attempt %d: %d tokens used of %d, $%.6f of $%.6f",
            job.job_id,
            job.attempt,
            used,
            state.allowance,
            cost,
            state.cost_allowance_usd,
        )
        return await self._decision(handle, used, cost, job.attempt, gone)

    async def _decision(
        self, handle, used: int, cost: float, attempt: int, gone: Callable[[], Awaitable[bool]]
    ) -> str:
        deadline = time.monotonic() + self._max_hold
        seen_waiting = False
        while time.monotonic() < deadline:
            await asyncio.sleep(POLL_SECONDS)
            if await gone():
                return "the agent went away"
            state = await handle.query("budget", result_type=BudgetState)
            if state.attempt != attempt:
                return "the attempt has ended"
            if state.refused:
                return "the job's token budget was refused"
            if state.awaiting_approval:
                seen_waiting = True
            elif not _spent(used, cost, state.allowance, state.cost_allowance_usd):
                return ""
            elif seen_waiting:
                return "the job stopped waiting for budget approval"
        return "no budget decision in time"


def _spent(used: int, cost: float, allowance: int, cost_allowance: float) -> bool:
    """Whichever budget is set and reached (as workflows/job_budget.py decides)."""
    return bool(allowance and used >= allowance) or bool(cost_allowance and cost >= cost_allowance)
