"""docker-compose.temporal.yml and the Dockerfile, checked statically (no Docker daemon on these machines).

What a `docker compose up` would find out late: a setting name the conductor ignores, a service that
starts before what it needs, a CLI command that does not exist, a drain cut short, a build without the
generated protobuf code.
"""

import fnmatch
import re
import tomllib
from pathlib import Path

import pytest
import typer
import yaml

from conductor_worker.commands.cli import app as conductor_cli
from conductor_worker.config import Settings

ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.temporal.yml").read_text())


@pytest.fixture(scope="module")
def services(compose: dict) -> dict[str, dict]:
    return compose["services"]


def depends_on(service: dict) -> dict[str, str]:
    return {name: spec["condition"] for name, spec in service.get("depends_on", {}).items()}


def seconds(duration: str) -> float:
    """Compose durations such as `2m`, `90s`, `1m30s`."""
    units = {"h": 3600, "m": 60, "s": 1}
    parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", duration)
    assert "".join(n + u for n, u in parts) == duration, f"unparsed duration {duration!r}"
    return sum(float(n) * units[u] for n, u in parts)


def test_every_conductor_variable_is_a_setting(services):
    names = {
        name for s in services.values() for name in s.get("environment", {}) if name.startswith("CONDUCTOR_")
    }
    assert names, "the conductor gets no settings"
    assert sorted(n for n in names if n.removeprefix("CONDUCTOR_").lower() not in Settings.model_fields) == []


def test_services_start_in_order_and_wait_for_health(services):
    assert depends_on(services["temporal"]) == {"postgresql": "service_healthy"}
    assert depends_on(services["temporal-ui"]) == {"temporal": "service_healthy"}
    assert depends_on(services["search-attributes"]) == {"temporal": "service_healthy"}
    assert depends_on(services["conductor"]) == {
        "temporal": "service_healthy",
        "search-attributes": "service_completed_successfully",
    }
    for name, service in services.items():
        for dependency, condition in depends_on(service).items():
            if condition == "service_healthy":
                assert "healthcheck" in services[dependency], (
                    f"{name} waits for {dependency}'s health, which has none"
                )


def test_ports_are_the_documented_ones(services):
    assert services["temporal-ui"]["ports"] == ["8080:8080"]
    assert services["temporal"]["ports"] == ["7233:7233"]
    assert services["conductor"]["environment"]["CONDUCTOR_TEMPORAL_UI_URL"] == "http://localhost:8080"
    readme = (ROOT / "README.md").read_text()
    assert "http://localhost:8080" in readme and "docker compose -f docker-compose.temporal.yml up" in readme


def test_search_attributes_are_registered_with_a_real_command_at_the_conductors_address(services):
    command = services["search-attributes"]["command"]
    assert command[:3] == ["conductor", "search-attributes", "register"]
    click_command = typer.main.get_command(conductor_cli)
    for name in command[1:3]:
        click_command = click_command.commands[name]
    options = {opt for param in click_command.params for opt in getattr(param, "opts", [])}
    address = command[command.index("--address") + 1]
    assert "--address" in options
    assert address == services["conductor"]["environment"]["CONDUCTOR_TEMPORAL_ADDRESS"] == "temporal:7233"
    assert address in services["temporal"]["healthcheck"]["test"]


def test_the_conductor_keeps_its_state_in_a_volume_and_has_time_to_drain(compose, services):
    conductor = services["conductor"]
    state_dir = conductor["environment"]["CONDUCTOR_STATE_DIR"]
    named = [v.split(":") for v in conductor["volumes"] if isinstance(v, str)]
    assert [source for source, target in named if target == state_dir] == ["conductor-state"]
    assert "conductor-state" in compose["volumes"]
    drain = Settings.model_fields["drain_timeout_seconds"].default
    assert seconds(conductor["stop_grace_period"]) >= drain + 60


def test_both_conductor_services_run_the_image_built_here(services):
    for name in ("conductor", "search-attributes"):
        assert (services[name]["build"], services[name]["image"]) == (".", "agent-conductor:local")
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.findall(r"^FROM (\S+)", dockerfile, re.M) == ["python:3.11-slim", "python:3.11-slim"]
    # A CMD, not an ENTRYPOINT: the Fargate launcher replaces the command with `conductor-agent run`.
    assert 'CMD ["conductor", "serve"]' in dockerfile
    assert not re.search(r"^ENTRYPOINT", dockerfile, re.M)


def test_the_image_generates_the_protobuf_code_as_make_proto_does():
    makefile = (ROOT / "Makefile").read_text()
    dockerfile = (ROOT / "Dockerfile").read_text()
    make_flags = re.search(r"grpc_tools\.protoc (.*?) \$<", makefile)[1]
    docker_flags = re.search(r"grpc_tools\.protoc (.*?) proto/conductor/v1/\*\.proto", dockerfile)[1]
    assert docker_flags == make_flags
    # ... before the wheel is built, so the wheel carries it.
    assert dockerfile.index("grpc_tools.protoc") < dockerfile.index("pip wheel")


def test_the_build_context_holds_what_the_wheel_needs_and_no_generated_code():
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def ignored(path: str) -> bool:
        return any(fnmatch.fnmatch(path, p) or path.startswith(p.rstrip("/") + "/") for p in patterns)

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = [p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]]
    needed = ["pyproject.toml", project["project"]["readme"], "proto/conductor/v1/agent.proto"]
    assert [p for p in packages + needed if ignored(p)] == []
    assert ignored("proto/conductor/v1/agent_pb2.py") and ignored("proto/conductor/v1/agent_pb2_grpc.py")
    assert ignored(".venv") and ignored(".git")


def test_the_image_and_make_install_the_cli_versions_the_agent_supports():
    from agent_runtime.coding_agents.adapters import CLI_ADAPTERS

    supported = {name: adapter.supported_version for name, adapter in CLI_ADAPTERS.items()}
    dockerfile = (ROOT / "Dockerfile").read_text()
    makefile = (ROOT / "Makefile").read_text()
    for source, pattern in ((dockerfile, r"^ARG {}=(\S+)"), (makefile, r"^{} := (\S+)")):
        assert re.search(pattern.format("CODEX_VERSION"), source, re.M)[1] == supported["codex"]
        assert re.search(pattern.format("CLAUDE_CODE_VERSION"), source, re.M)[1] == supported["claude"]
    assert "/opt/agent-clis/bin" in dockerfile
    # The 800 MB of CLIs `make agent-clis` installs stay out of the build context.
    assert ".tools/" in (ROOT / ".dockerignore").read_text().split()
