"""Retry policies per job kind: from the environment (or the TOML file) to the route each job gets."""

from pathlib import Path

import pytest

from activities.routing import Router
from conductor_worker.config import Settings
from conductor_worker.intake.messages import parse_message
from contracts.activity_io import RouteIncidentInput, RouteTicketInput
from contracts.policies import JobPolicy
from tests.helpers import ticket_body


def test_each_kind_reads_its_own_policy_from_the_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CONDUCTOR_TICKET_POLICY__MAX_AGENT_ATTEMPTS", "5")
    monkeypatch.setenv("CONDUCTOR_TICKET_POLICY__RETRY_WINDOW_SECONDS", "0")
    monkeypatch.setenv("CONDUCTOR_INCIDENT_POLICY__AGENT_TIMEOUT_SECONDS", "600")
    settings = Settings()
    assert settings.ticket_policy == JobPolicy(max_agent_attempts=5, retry_window_seconds=0)
    assert settings.incident_policy == JobPolicy(agent_timeout_seconds=600)


def test_a_policy_from_the_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    config = tmp_path / "conductor.toml"
    config.write_text("[incident_policy]\npublish_max_attempts = 9\nactivity_max_attempts = 2\n")
    monkeypatch.setenv("CONDUCTOR_CONFIG_FILE", str(config))
    assert Settings().incident_policy == JobPolicy(publish_max_attempts=9, activity_max_attempts=2)


def test_a_bad_policy_value_names_the_field(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CONDUCTOR_TICKET_POLICY__MAX_AGENT_ATTEMPTS", "0")
    with pytest.raises(ValueError, match="ticket_policy.max_agent_attempts"):
        Settings()


async def test_the_router_hands_each_job_the_policy_of_its_kind(tmp_path: Path):
    routes = tmp_path / "routes.yaml"
    routes.write_text(
        'tickets:\n  - route: {repo_url: /r.git}\naccounts:\n  - account: "*"\n    route: {repo_url: /r.git}\n'
    )
    ticket_policy, incident_policy = JobPolicy(max_agent_attempts=7), JobPolicy(agent_timeout_seconds=60)
    router = Router(routes, {"ticket": ticket_policy, "incident": incident_policy})
    routed_ticket = await router.route_ticket(RouteTicketInput(ticket=parse_message(ticket_body("ENG-1"))))
    routed_incident = await router.route_incident(RouteIncidentInput(account="123456789012"))
    assert routed_ticket.policy == ticket_policy and routed_incident.policy == incident_policy
