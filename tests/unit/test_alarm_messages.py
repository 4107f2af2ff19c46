"""CloudWatch alarm deliveries in three shapes -> one Alarm; every malformed one is poison with its reason."""

import json
from datetime import UTC, datetime

import pytest

from conductor_worker.intake.alarm_messages import (
    parse_classic_sns_alarm,
    parse_eventbridge_alarm,
    unwrap_sns,
)
from conductor_worker.intake.messages import parse_message
from conductor_worker.intake.poison import PoisonMessage
from contracts.alarms import Alarm, AlarmState
from contracts.tickets import TicketMessage
from tests.helpers import EXAMPLES
from tests.malformed_messages import MALFORMED_ALARMS

ALARMS = EXAMPLES / "alarms"
EVENT = json.loads((ALARMS / "eventbridge-alarm.json").read_text())
ENVELOPE = json.loads((ALARMS / "sns-envelope-alarm.json").read_text())
CLASSIC = json.loads((ALARMS / "classic-sns-alarm.json").read_text())
ISSUE = json.loads((EXAMPLES / "tickets" / "ENG-123.json").read_text())

EXPECTED = Alarm(
    account="204772699175",
    region="us-west-2",
    alarm_name="debian-cpu-spin-high-cpu",
    state=AlarmState.ALARM,
    previous_state="INSUFFICIENT_DATA",
    reason=EVENT["detail"]["state"]["reason"],
    event_time=datetime(2026, 5, 12, 20, 0, tzinfo=UTC),
    alarm_arn="arn:aws:cloudwatch:us-west-2:204772699175:alarm:debian-cpu-spin-high-cpu",
)


@pytest.mark.parametrize("fixture", ["eventbridge-alarm", "sns-envelope-alarm", "classic-sns-alarm"])
def test_each_shape_gives_the_same_alarm(fixture):
    alarm = parse_message((ALARMS / f"{fixture}.json").read_text())
    assert alarm == EXPECTED
    assert alarm.event_id == "204772699175/debian-cpu-spin-high-cpu/ALARM/2026-05-12T20:00:00+00:00"


def test_the_parsers_work_on_documents_too():
    assert unwrap_sns(ENVELOPE) == EVENT
    assert parse_eventbridge_alarm(EVENT) == parse_classic_sns_alarm(CLASSIC) == EXPECTED


def test_a_classic_alarm_inside_an_sns_envelope():
    assert parse_message(json.dumps({**ENVELOPE, "Message": json.dumps(CLASSIC)})) == EXPECTED


def test_a_jira_ticket_inside_an_sns_envelope():
    ticket = parse_message(json.dumps({**ENVELOPE, "Message": json.dumps(ISSUE)}))
    assert isinstance(ticket, TicketMessage) and ticket.key == "ENG-123"


@pytest.mark.parametrize("state", [AlarmState.OK, AlarmState.INSUFFICIENT_DATA])
def test_ok_and_insufficient_data_parse_with_their_state(state):
    event = {**EVENT, "detail": {**EVENT["detail"], "state": {**EVENT["detail"]["state"], "value": state}}}
    classic = {**CLASSIC, "NewStateValue": state.value, "OldStateValue": "ALARM"}
    assert parse_message(json.dumps(event)).state == state
    assert parse_message(json.dumps(classic)).state == state
    assert parse_message(json.dumps(classic)).event_id != EXPECTED.event_id


def test_event_time_falls_back_to_the_event_time_and_is_normalized_to_utc():
    state = {k: v for k, v in EVENT["detail"]["state"].items() if k != "timestamp"}
    event = {**EVENT, "time": "2026-05-12T22:00:00+02:00", "detail": {**EVENT["detail"], "state": state}}
    alarm = parse_message(json.dumps(event))
    assert alarm.event_time == EXPECTED.event_time and alarm.event_time.tzinfo is UTC
    assert alarm.event_id == EXPECTED.event_id


def test_classic_alarm_without_arn_keeps_no_region_rather_than_a_display_name():
    classic = {k: v for k, v in CLASSIC.items() if k != "AlarmArn"}
    alarm = parse_message(json.dumps(classic))
    assert (alarm.region, alarm.alarm_arn) == ("", "")
    assert alarm.event_id == EXPECTED.event_id  # still the same transition for dedup


def test_an_account_id_sent_as_a_number_is_accepted():
    assert parse_message(json.dumps({**CLASSIC, "AWSAccountId": 204772699175})) == EXPECTED


# name in tests/malformed_messages.py -> what the reason must say
REASONS = {
    "eventbridge-no-detail": "CloudWatch alarm event: detail is missing",
    "eventbridge-detail-not-object": "detail is str, expected an object",
    "eventbridge-empty-detail": "detail-type is missing",
    "eventbridge-other-detail-type": "detail-type 'CloudWatch Alarm Configuration Change' is not",
    "eventbridge-no-alarm-name": "detail.alarmName is missing",
    "eventbridge-no-state": "detail.state is missing",
    "eventbridge-bad-state": "detail.state.value 'FOO' is not one of ALARM, OK, INSUFFICIENT_DATA",
    "eventbridge-bad-time": "detail.state.timestamp 'yesterday' is not an ISO-8601 time",
    "eventbridge-time-without-offset": "detail.state.timestamp '2026-05-12T20:00:00' has no UTC offset",
    "eventbridge-no-time": "detail.state.timestamp and time are both missing",
    "eventbridge-bad-account": "account '12' is not a 12-digit account id",
    "sns-no-message": "SNS notification: Message is missing",
    "sns-message-not-json": "SNS notification: Message is not JSON",
    "sns-message-array": "SNS notification: Message is JSON list, expected an object",
    "sns-message-unknown-shape": "SNS notification: Message has an unknown shape (top-level keys: hello)",
    "sns-message-is-an-envelope": "SNS notification: Message is itself an SNS notification",
    "sns-message-bad-alarm": "detail.state.value 'FOO' is not one of",
    "classic-no-new-state": "classic SNS alarm: NewStateValue is missing",
    "classic-bad-state": "classic SNS alarm: NewStateValue 'ALARMING' is not one of",
    "classic-bad-time": "classic SNS alarm: StateChangeTime 'yesterday' is not an ISO-8601 time",
    "classic-bad-account": "classic SNS alarm: AWSAccountId '12' is not a 12-digit account id",
    "classic-no-account": "classic SNS alarm: AWSAccountId is missing",
    "classic-empty-alarm-name": "classic SNS alarm: AlarmName is missing or empty",
    "classic-bad-arn": "AlarmArn 'arn:aws:sns:us-west-2:204772699175:conductor-alarms' is not a CloudWatch",
}


def test_every_malformed_alarm_has_an_expected_reason():
    assert sorted(REASONS) == sorted(MALFORMED_ALARMS)


@pytest.mark.parametrize("name", sorted(MALFORMED_ALARMS))
def test_malformed_alarms_are_poison_with_one_line_naming_the_problem(name):
    with pytest.raises(PoisonMessage) as caught:
        parse_message(MALFORMED_ALARMS[name])
    assert REASONS[name] in caught.value.reason
    assert "\n" not in caught.value.reason
