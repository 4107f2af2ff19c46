"""The launcher hands the agent its gateway address, token and workdir, and no credentials."""

import pytest

from activities.launch_local import agent_environment
from conductor_worker.config import Settings
from conductor_worker.process.launcher_settings import agent_environment_config

SECRETS = {
    "GITHUB_TOKEN": "ghp_secret",
    "GH_TOKEN": "ghp_secret",
    "CONDUCTOR_GITHUB_TOKEN": "ghp_secret",
    "AWS_ACCESS_KEY_ID": "AKIA",
    "AWS_SECRET_ACCESS_KEY": "x",
    "AWS_SESSION_TOKEN": "x",
    "TEMPORAL_ADDRESS": "localhost:7233",
    "CONDUCTOR_TEMPORAL_ADDRESS": "localhost:7233",
    "OPENAI_API_KEY": "sk-x",
}


@pytest.fixture
def leaky_environment(monkeypatch):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)


def test_agent_gets_only_gateway_token_and_workdir(leaky_environment, tmp_path):
    settings = Settings(
        state_dir=tmp_path,
        temporal_address="temporal.internal:7233",
        gateway_listen="127.0.0.1:50051",
    )
    env = agent_environment(agent_environment_config(settings), "tok", tmp_path / "w")
    assert env["CONDUCTOR_AGENT_GATEWAY"] == "127.0.0.1:50051"
    assert env["CONDUCTOR_AGENT_TOKEN"] == "tok"
    assert not set(SECRETS) & set(env)
    assert not any("temporal" in value.lower() for value in env.values())
    assert not any(value in ("ghp_secret", "AKIA") for value in env.values())


def test_a_cli_agent_gets_the_model_gateway_and_no_model_key(leaky_environment, tmp_path, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-x")
    monkeypatch.setenv("CODEX_HOME", "/root/.codex")
    settings = Settings(
        state_dir=tmp_path,
        coding_agent="codex",
        model_gateway_public_url="http://127.0.0.1:8080",
        model_openai_api_key="sk-upstream",
    )
    env = agent_environment(agent_environment_config(settings), "tok", tmp_path / "w")
    assert env["CONDUCTOR_AGENT_MODEL_GATEWAY"] == "http://127.0.0.1:8080"
    assert not {"OPENAI_API_KEY", "ANTHROPIC_API_KEY", "CODEX_HOME"} & set(env)
    assert not any("sk-" in value for value in env.values())
