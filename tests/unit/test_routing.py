import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.routing import Router, load_routes, route_for
from contracts.activity_io import RouteTicketInput
from contracts.policies import JobPolicy
from contracts.tickets import TicketMessage

ROUTES = """
tickets:
  - project: ENG
    component: Billing
    route: {repo_url: /srv/billing.git, name: billing}
  - label: infra
    route: {repo_url: /srv/infra.git, base_branch: develop, name: infra}
  - project: ENG
    route: {repo_url: /srv/app.git, name: app}
"""


def ticket(**fields) -> TicketMessage:
    return TicketMessage(key="ENG-1", summary="s", **fields)


@pytest.fixture
def routes_file(tmp_path):
    path = tmp_path / "routes.yaml"
    path.write_text(ROUTES)
    return path


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"project": "ENG", "components": ["Billing"]}, "billing"),
        ({"project": "ENG", "labels": ["infra"]}, "infra"),
        ({"project": "OPS", "labels": ["infra"]}, "infra"),
        ({"project": "ENG", "components": ["Auth"]}, "app"),
    ],
)
def test_first_matching_rule_wins(routes_file, fields, expected):
    assert route_for(load_routes(routes_file), ticket(**fields)).route.name == expected


async def test_no_route_fails_with_a_readable_reason(routes_file):
    router = Router(routes_file)
    with pytest.raises(ApplicationError) as info:
        await ActivityEnvironment().run(
            router.route_ticket, RouteTicketInput(ticket=ticket(project="OPS", labels=["x"]))
        )
    assert info.value.non_retryable and info.value.type == "NoRoute"
    assert "no route for ticket ENG-1 (project OPS" in info.value.message


async def test_invalid_routes_file_is_reported_and_retryable(tmp_path):
    bad = tmp_path / "routes.yaml"
    bad.write_text("tickets: [{project: ENG}]\n")  # no route
    with pytest.raises(ApplicationError) as info:
        await ActivityEnvironment().run(
            Router(bad).route_ticket, RouteTicketInput(ticket=ticket(project="ENG"))
        )
    assert not info.value.non_retryable and "is invalid" in info.value.message


async def test_a_routes_token_budget_overrides_the_job_kinds(tmp_path):
    routes = tmp_path / "routes.yaml"
    routes.write_text(
        "tickets:\n"
        "  - {project: ENG, route: {repo_url: /r/eng, token_budget: 5000}}\n"
        "  - {project: OPS, route: {repo_url: /r/ops}}\n"
        "  - {project: FREE, route: {repo_url: /r/free, token_budget: 0}}\n"
        "  - {project: USD, route: {repo_url: /r/usd, cost_budget_usd: 2.5}}\n"
    )
    router = Router(routes, {"ticket": JobPolicy(token_budget=100_000, agent_timeout_seconds=60)})

    async def budget(project: str) -> tuple[int, int]:
        routed = await ActivityEnvironment().run(
            router.route_ticket, RouteTicketInput(ticket=ticket(project=project))
        )
        return routed.policy.token_budget, routed.policy.agent_timeout_seconds

    assert await budget("ENG") == (5000, 60)
    assert await budget("OPS") == (100_000, 60)
    assert await budget("FREE") == (0, 60)  # 0: this route's jobs have no budget
    usd = await ActivityEnvironment().run(router.route_ticket, RouteTicketInput(ticket=ticket(project="USD")))
    assert (usd.policy.token_budget, usd.policy.cost_budget_usd) == (100_000, 2.5)  # each budget on its own
