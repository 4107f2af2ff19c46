"""Repository claims: a FIFO queue per repository so at most `permits` jobs work on it at once."""

from pydantic import BaseModel, Field


def claim_workflow_id(repo_url: str) -> str:
    """One claim workflow per repository, keyed by the exact URL agents clone and publishers push."""
    return f"repo-claim/{repo_url}"


class ClaimRequest(BaseModel):
    # The job workflow that waits; it gets the `claim_granted` signal when its turn comes.
    job_workflow_id: str
    # The route's `max_concurrent_jobs`; the latest request's value applies.
    permits: int = Field(default=1, ge=1)


class ClaimRelease(BaseModel):
    job_workflow_id: str


class ClaimGranted(BaseModel):
    claim_workflow_id: str


class RepoClaimState(BaseModel):
    """The claim workflow's state and its `queue` query answer; carried across continue-as-new."""

    repo_url: str
    permits: int = 1
    holders: list[str] = Field(default_factory=list)
    # First come, first served.
    waiting: list[str] = Field(default_factory=list)
    # Holders granted (or re-asking) whose `claim_granted` signal is not sent yet; carried across
    # continue-as-new so a grant decided just before it is never lost.
    to_notify: list[str] = Field(default_factory=list)
    # Continue-as-new after this many history events; how often holders are checked for having ended
    # without releasing; how long the claim stays idle before it ends. Small in tests, to drive each often.
    events_before_continue: int = Field(default=5000, ge=10)
    holder_check_seconds: float = Field(default=120, gt=0)
    idle_end_seconds: float = Field(default=600, gt=0)

    def position(self, job_workflow_id: str) -> int:
        """0: holds the claim; n >= 1: n-th in line; -1: neither."""
        if job_workflow_id in self.holders:
            return 0
        if job_workflow_id in self.waiting:
            return self.waiting.index(job_workflow_id) + 1
        return -1
