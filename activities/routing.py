"""Ticket and incident -> repository routing from a YAML file (re-read on every call)."""

from pathlib import Path

import yaml
from temporalio import activity
from temporalio.exceptions import ApplicationError

from contracts.activity_io import (
    RouteIncidentInput,
    RouteIncidentResult,
    RouteTicketInput,
    RouteTicketResult,
)
from contracts.policies import JobPolicy
from contracts.routing import AccountRouteRule, RepoRoute, RoutesConfig, TicketRouteRule
from contracts.tickets import TicketMessage


def load_routes(path: Path) -> RoutesConfig:
    if not path.exists():
        return RoutesConfig()
    return RoutesConfig.model_validate(yaml.safe_load(path.read_text()) or {})


def rule_matches(rule: TicketRouteRule, ticket: TicketMessage) -> bool:
    """Every criterion the rule gives must match; a rule with none matches everything (a default)."""
    if rule.project is not None and rule.project != ticket.project:
        return False
    if rule.component is not None and rule.component not in ticket.components:
        return False
    return rule.label is None or rule.label in ticket.labels


def route_for(config: RoutesConfig, ticket: TicketMessage) -> TicketRouteRule | None:
    return next((rule for rule in config.tickets if rule_matches(rule, ticket)), None)


def account_route_for(config: RoutesConfig, account: str) -> AccountRouteRule | None:
    """The account's own rule wins over the catch-all `*`, wherever they stand in the file."""
    exact = [rule for rule in config.accounts if rule.account == account]
    return (exact or [rule for rule in config.accounts if rule.account == "*"] or [None])[0]


def own_repository(repo: str, clone_url: str) -> RepoRoute:
    """A GitHub issue's default route: its own repository, published through GitHub (a PR)."""
    return RepoRoute(repo_url=clone_url.format(repo=repo), publisher="github", github_repo=repo, name=repo)


class Router:
    """Routing decisions, read from the routes file on every call so edits need no restart."""

    def __init__(
        self,
        routes_file: Path,
        policies: dict[str, JobPolicy] | None = None,
        github_clone_url: str = "",
        status_comment_sources: frozenset[str] = frozenset(),
    ) -> None:
        self._routes_file = routes_file
        # Per job kind ("ticket", "incident"), from config; handed to each job with its route.
        self._policies = policies or {}
        # A GitHub issue with no rule of its own goes to its repository, cloned from here ({repo}: owner/name).
        self._github_clone_url = github_clone_url
        # Ticket sources the conductor keeps a live status comment on (`jira`, `github`).
        self._status_sources = status_comment_sources

    def _load(self) -> RoutesConfig:
        try:
            return load_routes(self._routes_file)
        except (yaml.YAMLError, ValueError) as err:
            # Retryable: an operator can fix the file and the work then proceeds.
            raise ApplicationError(f"routes file {self._routes_file} is invalid: {err}") from err

    @activity.defn(name="route_incident")
    async def route_incident(self, input: RouteIncidentInput) -> RouteIncidentResult:
        rule = account_route_for(self._load(), input.account)
        if rule is None:
            raise ApplicationError(
                f"no route for AWS account {input.account}; add it under `accounts:` in {self._routes_file}",
                type="NoRoute",
                non_retryable=True,
            )
        return RouteIncidentResult(
            route=rule.route, policy=rule.route.policy_for(self._policies.get("incident", JobPolicy()))
        )

    @activity.defn(name="route_ticket")
    async def route_ticket(self, input: RouteTicketInput) -> RouteTicketResult:
        ticket = input.ticket
        config = self._load()
        rule = route_for(config, ticket)
        if rule is None and ticket.github_issue and self._github_clone_url:
            return RouteTicketResult(
                route=own_repository(ticket.github_issue[0], self._github_clone_url),
                policy=self._policies.get("ticket", JobPolicy()),
                status_comments=ticket.source in self._status_sources,
            )
        if rule is None:
            raise ApplicationError(
                f"no route for ticket {ticket.key} (project {ticket.project or '-'}, "
                f"components {ticket.components or '-'}, labels {ticket.labels or '-'}); "
                f"add a rule to {self._routes_file}",
                type="NoRoute",
                non_retryable=True,
            )
        return RouteTicketResult(
            route=rule.route,
            policy=rule.route.policy_for(self._policies.get("ticket", JobPolicy())),
            status_comments=ticket.source in self._status_sources,
        )
