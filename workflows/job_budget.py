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
    allowance: int = 0  # tokens; 0: no token budget
    cost_allowance: float = 0.0  # US dollars; 0: no cost budget
    awaiting: bool = False
    # Tokens (and dollars) the attempt had used when the gateway reported the budget spent.
    used: int = 0
    used_cost: float = 0.0
    # Why the job must end FAILED `budget` (a refusal, or no answer in time); empty while it may go on.
    ended: str = ""

    def start_attempt(self, token_budget: int, cost_budget_usd: float = 0.0) -> None:
        self.allowance, self.cost_allowance = token_budget, cost_budget_usd
        self.awaiting, self.ended = False, ""

    def spent(self, used_tokens: int, used_cost: float) -> bool:
        """Whichever budget is set and reached (the gateway decides the same way: model_gateway/budget.py)."""
        return bool(self.allowance and used_tokens >= self.allowance) or bool(
            self.cost_allowance and used_cost >= self.cost_allowance
        )

    def exceeded(self, request: BudgetExceeded, attempt: int) -> bool:
        """True when this report starts a wait for approval (a stale or repeated one changes nothing)."""
        if self.awaiting or self.ended or request.attempt != attempt:
            return False
        if not self.spent(request.used_tokens, request.used_cost_usd):
            return False
        self.awaiting, self.used, self.used_cost = True, request.used_tokens, request.used_cost_usd
        return True

    def reason(self) -> str:
        """Which budget the attempt spent, for its note."""
        spent = []
        if self.allowance and self.used >= self.allowance:
            spent.append(f"token budget of {self.allowance}")
        if self.cost_allowance and self.used_cost >= self.cost_allowance:
            spent.append(f"cost budget of ${self.cost_allowance:g}")
        return " and ".join(spent or ["budget"]) + " spent"

    def approve(self, approval: BudgetApproval) -> None:
        # Only a budget that is set is raised: raising an unset one would create a limit nobody asked for.
        if self.allowance:
            self.allowance = max(self.allowance, self.used) + approval.raise_tokens
        if self.cost_allowance:
            self.cost_allowance = round(max(self.cost_allowance, self.used_cost) + approval.raise_cost_usd, 9)
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
            cost_allowance_usd=self.cost_allowance,
            awaiting_approval=self.awaiting,
            refused=bool(self.ended),
        )
