"""A later alarm of a running incident job reaches its coding agent's next model request (real codex)."""

from datetime import UTC, datetime, timedelta

import pytest

from conductor_worker.intake.sqs import SqsIntake
from contracts.alarms import Alarm, AlarmState
from contracts.jobs import JobState
from tests.helpers import incident_job_result, wait_for
from tests.model_standin import ModelStandin, Stream, add_file_patch, codex_message_turn, codex_patch_turn
from tests.scale_helpers import new_accounts

pytestmark = pytest.mark.timeout(90)


def alarm(account: str, name: str, at: datetime) -> Alarm:
    return Alarm(
        account=account,
        region="eu-west-1",
        alarm_name=name,
        state=AlarmState.ALARM,
        reason=f"{name} crossed its threshold",
        event_time=at,
    )


async def test_a_later_alarm_reaches_the_running_agent(
    client, agent_settings, start_conductor, sample_remote, model: ModelStandin, tmp_path
):
    routes = tmp_path / "incident-routes.yaml"
    routes.write_text(
        f'accounts:\n  - account: "*"\n    route: {{repo_url: {sample_remote}, name: greeter}}\n'
    )
    settings = agent_settings.model_copy(update={"coding_agent": "codex", "routes_file": routes})
    [account] = new_accounts(1)
    # The first turn streams for ~9 s: the chain forwards later alarms to its job within 5 s.
    slow = codex_patch_turn(add_file_patch("docs/incident.md", "investigating"))
    model.script_responses(Stream(slow.events, delay=3), codex_message_turn("mitigated"))
    intake = SqsIntake(client, settings, None)
    await start_conductor(settings)
    started = datetime.now(UTC)
    await intake.deliver_alarm(alarm(account, "api-5xx", started))
    await wait_for(lambda: _requests(model), timeout=60)

    await intake.deliver_alarm(alarm(account, "db-connections", started + timedelta(seconds=30)))
    _, result = await incident_job_result(client, account)

    first, second, *_ = model.requests_to("/v1/responses")
    assert "db-connections" not in str(first.body)
    assert f"ALARM db-connections ({account} eu-west-1)" in str(second.body)
    assert "db-connections crossed its threshold" in str(second.body)
    assert result.state == JobState.SUCCEEDED


async def _requests(model: ModelStandin) -> bool:
    return bool(model.requests_to("/v1/responses"))
