"""How each kind of job is bounded and retried; set per kind in config (`CONDUCTOR_TICKET_POLICY__…`)."""

from pydantic import BaseModel, Field


class JobPolicy(BaseModel):
    # How long one agent run may take before the job is TIMED_OUT.
    agent_timeout_seconds: int = Field(default=1800, gt=0)
    # Launches per run when the agent crashes, falls silent or never handshakes (each a new attempt + token).
    max_agent_attempts: int = Field(default=3, ge=1)
    # Quick conductor-side steps (stage files, launch, stop, leave a note): attempts before the job fails.
    activity_max_attempts: int = Field(default=5, ge=1)
    # Pushing the branch and opening the pull request: attempts before the job fails.
    publish_max_attempts: int = Field(default=5, ge=1)
    # A FAILED, CRASHED, TIMED_OUT, NO_CHANGES or CANCELLED job stays open this long for a `retry` signal, then closes
    # as failed. 0: close at once.
    retry_window_seconds: int = Field(default=24 * 3600, ge=0)
    # How long a local agent's watch or stop waits for its launching conductor to take it (the
    # schedule-to-start timeout on that conductor's own task queue). A conductor gone longer took its
    # agents with it: the job relaunches on another. Covers a deploy's restart (README "Deploying safely").
    launching_host_timeout_seconds: int = Field(default=60, gt=0)
    # Model tokens (input + output) one agent attempt may use through the model gateway before the job
    # pauses in AWAITING_APPROVAL for an operator's `approve_budget` / `refuse_budget`. 0: no budget.
    token_budget: int = Field(default=0, ge=0)
    # The same in US dollars, by the price table (CONDUCTOR_MODEL_PRICES); whichever is reached first pauses.
    cost_budget_usd: float = Field(default=0, ge=0)
    # How long a paused job waits for that answer; then it ends FAILED with reason `budget`.
    approval_window_seconds: int = Field(default=3600, gt=0)
