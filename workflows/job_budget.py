"""A job's model-token budget: when the model gateway finds it spent, the job pauses for an operator.

Deterministic state for the job workflow (workflows/agent_job.py), no I/O:

    RUNNING ──budget_exceeded (gateway)──► AWAITING_APPROVAL ──approve_budget──► RUNNING (allowance raised)
                                                   └──refuse_budget, or no answer in the window──► FAILED `budget`

The allowance is per agent attempt (the gateway counts usage per attempt); the policy's `token_budget`
is where each attempt starts. The gateway holds the agent's request while the job waits and lets it go
on once the allowance is above what the attempt used (model_gateway/budget.py).
"""

from dataclasses import dataclass

from contracts.operator import BudgetApproval, BudgetExceeded, BudgetRefusal, BudgetState


@dataclass
class JobBudget:
    allowance: int = 0  # 0: no budget
    awaiting: bool = False
    # Tokens the attempt had used when the gateway reported the budget spent.
    used: int = 0
    # Why the job must end FAILED `budget` (a refusal, or no answer in time); empty while it may go on.
    ended: str = ""

    def start_attempt(self, token_budget: int) -> None:
        self.allowance, self.awaiting, self.ended = token_budget, False, ""

    def exceeded(self, request: BudgetExceeded, attempt: int) -> bool:
        """True when this report starts a wait for approval (a stale or repeated one changes nothing)."""
        if self.awaiting or self.ended or request.attempt != attempt or not self.allowance:
            return False
        if request.used_tokens < self.allowance:
            return False
        self.awaiting, self.used = True, request.used_tokens
        return True

    def approve(self, approval: BudgetApproval) -> None:
        self.allowance = max(self.allowance, self.used) + approval.raise_tokens
        self.awaiting = False

    def refuse(self, refusal: BudgetRefusal) -> None:
        self.ended = f"budget: refused by {refusal.by}" + (f": {refusal.reason}" if refusal.reason else "")
        self.awaiting = False

    def expire(self, window_seconds: int) -> None:
        self.ended = f"budget: no approval within {window_seconds}s"
        self.awaiting = False

    def state(self, attempt: int) -> BudgetState:
        return BudgetState(
            attempt=attempt,
            allowance=self.allowance,
            awaiting_approval=self.awaiting,
            refused=bool(self.ended),
        )
