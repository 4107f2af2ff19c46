"""What operators send a running job with the `temporal` CLI: signals `cancel`/`retry`, update `steer`."""

from pydantic import BaseModel, Field, model_validator

from contracts.jobs import JobState


class CancelRequest(BaseModel):
    # Who asked and why: recorded in the job's history and in the note left on the ticket.
    by: str = "operator"
    reason: str = ""


class RetryRequest(BaseModel):
    by: str = "operator"
    reason: str = ""


class SteerRequest(BaseModel):
    """More instructions for the agent of a queued or running job."""

    text: str = Field(min_length=1, max_length=20_000)
    by: str = "operator"


class SteerAck(BaseModel):
    # 1, 2, ...: the instruction's number within the job; agents see them in this order.
    seq: int
    attempt: int
    state: JobState
    # True when a running agent was handed the instruction now; otherwise the next launch gets it.
    delivered_to_running_agent: bool
    # True once a model request of the running coding agent carried it (CLI agents, through the model
    # gateway); the update waits up to `steering_delivery_wait_seconds` for that.
    delivered_to_agent: bool = False


class SteeringDelivered(BaseModel):
    """From the model gateway: a model request of `attempt` carried the job's instructions up to `seq`."""

    attempt: int = Field(ge=1)
    seq: int = Field(ge=1)


class BudgetExceeded(BaseModel):
    """From the model gateway: an attempt's usage reached its token allowance; its next request is held."""

    attempt: int
    used_tokens: int
    used_cost_usd: float = 0.0


class BudgetApproval(BaseModel):
    """`approve_budget`: let the held request go on, with this many more tokens (and dollars, for a cost
    budget)."""

    raise_tokens: int = Field(default=0, ge=0)
    raise_cost_usd: float = Field(default=0, ge=0)
    by: str = "operator"

    @model_validator(mode="after")
    def _raises_something(self) -> "BudgetApproval":
        if not self.raise_tokens and not self.raise_cost_usd:
            raise ValueError("an approval raises raise_tokens or raise_cost_usd (or both)")
        return self


class BudgetRefusal(BaseModel):
    """`refuse_budget`: end the job FAILED with reason `budget`; the held request gets an error."""

    by: str = "operator"
    reason: str = ""


class BudgetState(BaseModel):
    """The `budget` query: what the model gateway checks a held request against."""

    attempt: int
    # Tokens the current attempt may use; 0: no budget.
    allowance: int
    # US dollars it may spend (price table); 0: no cost budget.
    cost_allowance_usd: float = 0.0
    awaiting_approval: bool = False
    refused: bool = False
