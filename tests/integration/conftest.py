"""Fixtures for jobs with the real coding CLIs: the scripted model provider and settings pointing at it."""

import pytest
from pydantic import SecretStr

from conductor_worker.intake.messages import parse_message
from conductor_worker.intake.sqs import SqsIntake
from tests.helpers import free_port, ticket_body, ticket_result, use_real_agent_clis
from tests.model_standin import ModelStandin

# The provider key: only the conductor holds it (tests check the agent never sees it).
UPSTREAM_KEY = "sk-upstream-only-the-conductor-holds"


@pytest.fixture
def model():
    with ModelStandin(key=UPSTREAM_KEY) as standin:
        yield standin


@pytest.fixture
def agent_settings(settings, model: ModelStandin, monkeypatch):
    use_real_agent_clis(monkeypatch)
    return settings.model_copy(
        update={
            # A known address, so the test can call the model gateway itself.
            "rest_listen": f"127.0.0.1:{free_port()}",
            "model_openai_url": f"{model.base_url}/v1",
            "model_openai_api_key": SecretStr(UPSTREAM_KEY),
            "model_anthropic_url": f"{model.base_url}/v1",
            "model_anthropic_api_key": SecretStr(UPSTREAM_KEY),
            "model_retry_max_wait_seconds": 5,
        }
    )


async def run_ticket(client, settings, start_conductor, key: str):
    await start_conductor(settings)
    await SqsIntake(client, settings, None).start_ticket(parse_message(ticket_body(key)))
    return await ticket_result(client, key, timeout=75)
