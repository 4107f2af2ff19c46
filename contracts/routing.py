"""Where a job's work goes: repository, base branch, and how it is published."""

from typing import Literal

from pydantic import BaseModel, Field

from contracts.policies import JobPolicy


class RepoRoute(BaseModel):
    # Clone URL handed to the agent, and push URL for the publisher.
    repo_url: str
    base_branch: str = "main"
    publisher: Literal["local", "github"] = "local"
    # `owner/name` on GitHub; required by the github publisher.
    github_repo: str | None = None
    # Readable name used in search attributes and logs.
    name: str = ""
    # The dev-container map: image (local) or task definition (fargate) the agent runs in; empty = default.
    agent_image: str = ""
    # Jobs that may work on this repository at once; more wait in its FIFO claim queue (state QUEUED).
    max_concurrent_jobs: int = Field(default=1, ge=1)
    # Model tokens an agent attempt of this route may use before the job pauses for approval; unset: the
    # job kind's policy (CONDUCTOR_TICKET_POLICY__TOKEN_BUDGET, ..._INCIDENT_...), 0: no budget.
    token_budget: int | None = Field(default=None, ge=0)
    # The same in US dollars (by the price table); unset: the job kind's `cost_budget_usd`.
    cost_budget_usd: float | None = Field(default=None, ge=0)

    def policy_for(self, kind_policy: JobPolicy) -> JobPolicy:
        """The job kind's policy, with this route's budgets where it sets them."""
        budgets = {"token_budget": self.token_budget, "cost_budget_usd": self.cost_budget_usd}
        return kind_policy.model_copy(update={k: v for k, v in budgets.items() if v is not None})


class TicketRouteRule(BaseModel):
    """First rule whose every given criterion matches a ticket wins."""

    project: str | None = None
    component: str | None = None
    label: str | None = None
    route: RepoRoute


class AccountRouteRule(BaseModel):
    """Incidents of an AWS account go to this repository; `account: "*"` is a catch-all."""

    account: str = Field(pattern=r"^([0-9]{12}|\*)$")
    route: RepoRoute


class RoutesConfig(BaseModel):
    tickets: list[TicketRouteRule] = Field(default_factory=list)
    accounts: list[AccountRouteRule] = Field(default_factory=list)
