"""Fargate launcher parts moto cannot show: the RunTask request, error classes, settings, status cache."""

import threading
import time

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities import launch_fargate
from activities.launch_fargate import FargateLauncher, ecs_error, run_task_request
from conductor_worker.config import Settings
from conductor_worker.process.launcher_settings import fargate_launcher_config
from contracts.activity_io import LaunchAgentInput


def fargate_settings(tmp_path, **overrides) -> Settings:
    values = dict(
        state_dir=tmp_path,
        token_secret="s" * 32,
        launcher="fargate",
        gateway_public_address="conductor.internal:50051",
        ecs_cluster="agents",
        ecs_subnets=["subnet-a"],
    )
    return Settings(**{**values, **overrides})


def client_error(code: str, status: int = 400) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "RunTask"
    )


def test_request_holds_tls_paths_but_not_the_model_key_and_keys_fit_ecs_limits(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    settings = fargate_settings(
        tmp_path, coding_agent="codex", agent_tls_ca_file="/etc/conductor/ca.pem", ecs_assign_public_ip=True
    )
    job = LaunchAgentInput(job_id="incident/204772699175/2026-05-12T20:00:00Z/job-2", attempt=3)
    config = fargate_launcher_config(settings)
    request = run_task_request(config, job, "arn:td", "agent", "tok", "c" * 64)
    env = {e["name"]: e["value"] for e in request["overrides"]["containerOverrides"][0]["environment"]}
    assert env["CONDUCTOR_AGENT_TLS_CA"] == "/etc/conductor/ca.pem"
    assert env["CONDUCTOR_AGENT_CODING_AGENT"] == "codex" and "OPENAI_API_KEY" not in env
    assert request["networkConfiguration"]["awsvpcConfiguration"]["assignPublicIp"] == "ENABLED"
    assert len(request["startedBy"]) <= 36
    other = run_task_request(config, job.model_copy(update={"attempt": 4}), "arn:td", "agent", "tok", "c")
    assert other["startedBy"] != request["startedBy"]


@pytest.mark.parametrize(
    ("err", "retryable"),
    [
        (client_error("ThrottlingException"), True),
        (client_error("ServerException", 500), True),
        (client_error("ServiceUnavailable", 503), True),
        (EndpointConnectionError(endpoint_url="https://ecs"), True),
        (client_error("AccessDeniedException"), False),
        (client_error("InvalidParameterException"), False),
    ],
)
def test_throttling_and_outages_are_retried_and_refusals_are_not(err, retryable):
    assert ecs_error(err, "RunTask").non_retryable is not retryable


def test_subnets_and_groups_are_comma_separated_in_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CONDUCTOR_ECS_SUBNETS", "subnet-a, subnet-b")
    monkeypatch.setenv("CONDUCTOR_ECS_SECURITY_GROUPS", "sg-1")
    settings = Settings(state_dir=tmp_path)
    assert settings.ecs_subnets == ["subnet-a", "subnet-b"] and settings.ecs_security_groups == ["sg-1"]


class FakeEcs:
    """Answers what moto cannot: RunTask without a task (no capacity), and counts DescribeTasks."""

    def __init__(self) -> None:
        self.status = "RUNNING"
        self.calls = 0
        self.called = threading.Event()
        self.run_answers = [[], [{"taskArn": "arn:t"}]]
        self.client_tokens: list[str] = []

    def describe_tasks(self, cluster: str, tasks: list[str]) -> dict:
        self.calls += 1
        self.called.set()
        return {"tasks": [{"lastStatus": self.status}]}

    def list_tasks(self, **_: object) -> dict:
        return {"taskArns": []}

    def describe_task_definition(self, taskDefinition: str) -> dict:
        definition = {"taskDefinitionArn": "arn:td", "networkMode": "awsvpc"}
        return {"taskDefinition": definition | {"containerDefinitions": [{"name": "agent"}]}}

    def run_task(self, clientToken: str, **_: object) -> dict:
        self.client_tokens.append(clientToken)
        return {"tasks": self.run_answers.pop(0), "failures": [{"reason": "RESOURCE:FARGATE"}]}


async def test_a_launch_without_capacity_is_retried_with_a_new_request(tmp_path):
    ecs = FakeEcs()
    launcher = FargateLauncher(
        fargate_launcher_config(fargate_settings(tmp_path, ecs_task_definition="agent")), ecs
    )
    job = LaunchAgentInput(job_id="job/ticket/jira/ENG-1", attempt=1)
    with pytest.raises(ApplicationError, match="RESOURCE:FARGATE") as raised:
        await ActivityEnvironment().run(launcher.launch_agent, job)
    assert not raised.value.non_retryable
    # ECS would answer the first clientToken with the same failure again.
    assert (await ActivityEnvironment().run(launcher.launch_agent, job)).agent_id == "fargate:arn:t"
    assert len(set(ecs.client_tokens)) == 2


def test_is_alive_answers_from_a_fresh_status_and_refreshes_a_stale_one_in_the_background(
    tmp_path, monkeypatch
):
    ecs = FakeEcs()
    launcher = FargateLauncher(fargate_launcher_config(fargate_settings(tmp_path)), ecs)
    assert launcher.is_alive("fargate:arn:t") and ecs.calls == 1
    assert launcher.is_alive("fargate:arn:t") and ecs.calls == 1
    monkeypatch.setattr(launch_fargate, "STATUS_TTL_SECONDS", 0.0)
    ecs.status, ecs.called = "STOPPED", threading.Event()
    assert launcher.is_alive("fargate:arn:t")  # the stale answer, while the refresh runs
    assert ecs.called.wait(5)
    deadline = time.monotonic() + 5
    while launcher.is_alive("fargate:arn:t") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not launcher.is_alive("fargate:arn:t")
    calls = ecs.calls
    assert not launcher.is_alive("fargate:arn:t") and ecs.calls == calls  # STOPPED is final
