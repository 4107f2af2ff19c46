"""CloudWatch alarm deliveries -> one `Alarm` contract; one parser per shape, malformed input is poison.

Three shapes reach the intake queue:
- the EventBridge "CloudWatch Alarm State Change" event (EventBridge rule -> SQS);
- any message inside an SNS notification envelope (SQS subscribed to SNS without raw delivery);
- the classic CloudWatch SNS alarm notification (alarm action -> SNS -> SQS with raw delivery).
The same transition in any shape parses to an equal `Alarm`, so it has one `event_id` and counts once.
"""

import re
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from conductor_worker.intake.poison import PoisonMessage, load_json
from contracts.alarms import Alarm, AlarmState

EVENTBRIDGE_DETAIL_TYPE = "CloudWatch Alarm State Change"
_STATES = ", ".join(s.value for s in AlarmState)
_ACCOUNT = re.compile(r"^[0-9]{12}$")
# arn:<partition>:cloudwatch:<region>:<account>:alarm:<name>; the partition differs in China and GovCloud.
_ALARM_ARN = re.compile(r"^arn:aws[a-z-]*:cloudwatch:([a-z0-9-]+):([0-9]{12}):alarm:.+$")

EVENTBRIDGE = "CloudWatch alarm event"
CLASSIC = "classic SNS alarm"
SNS = "SNS notification"


def unwrap_sns(doc: dict[str, Any]) -> dict[str, Any]:
    """The document inside an SNS envelope; `Message` is a JSON string, never an object."""
    message = doc.get("Message")
    if message is None:
        raise PoisonMessage(f"{SNS}: Message is missing")
    if not isinstance(message, str):
        raise PoisonMessage(f"{SNS}: Message is {type(message).__name__}, expected a JSON string")
    inner = load_json(message, f"{SNS}: Message")
    if not isinstance(inner, dict):
        raise PoisonMessage(f"{SNS}: Message is JSON {type(inner).__name__}, expected an object")
    # One level only: nothing we subscribe to wraps twice, and recursion would let a body nest without end.
    if inner.get("Type") == "Notification":
        raise PoisonMessage(f"{SNS}: Message is itself an SNS notification")
    return inner


def parse_eventbridge_alarm(doc: dict[str, Any]) -> Alarm:
    if doc.get("detail-type") is None:
        raise PoisonMessage(f"{EVENTBRIDGE}: detail-type is missing, expected {EVENTBRIDGE_DETAIL_TYPE!r}")
    if doc["detail-type"] != EVENTBRIDGE_DETAIL_TYPE:
        raise PoisonMessage(
            f"{EVENTBRIDGE}: detail-type {_show(doc['detail-type'])} is not {EVENTBRIDGE_DETAIL_TYPE!r}"
        )
    detail = _object(doc, "detail", EVENTBRIDGE)
    state = _object(detail, "state", EVENTBRIDGE, path="detail.state")
    previous = detail.get("previousState")
    # The state's own timestamp is the transition time; top-level `time` is when EventBridge emitted it.
    if state.get("timestamp") is not None:
        event_time = _time(state["timestamp"], EVENTBRIDGE, "detail.state.timestamp")
    elif doc.get("time") is not None:
        event_time = _time(doc["time"], EVENTBRIDGE, "time")
    else:
        raise PoisonMessage(f"{EVENTBRIDGE}: detail.state.timestamp and time are both missing")
    return _alarm(
        EVENTBRIDGE,
        account=_account(doc.get("account"), EVENTBRIDGE, "account"),
        region=_text(doc.get("region")),
        alarm_name=_name(detail.get("alarmName"), EVENTBRIDGE, "detail.alarmName"),
        state=_state(state.get("value"), EVENTBRIDGE, "detail.state.value"),
        previous_state=_text(previous.get("value")) if isinstance(previous, dict) else "",
        reason=_text(state.get("reason")),
        event_time=event_time,
        alarm_arn=_alarm_arn(doc.get("resources")),
    )


def parse_classic_sns_alarm(doc: dict[str, Any]) -> Alarm:
    arn = doc.get("AlarmArn")
    arn_match = _ALARM_ARN.match(arn) if isinstance(arn, str) else None
    if arn is not None and arn_match is None:
        raise PoisonMessage(f"{CLASSIC}: AlarmArn {_show(arn)} is not a CloudWatch alarm ARN")
    return _alarm(
        CLASSIC,
        account=_account(doc.get("AWSAccountId"), CLASSIC, "AWSAccountId"),
        # `Region` is a display name ("US West (Oregon)"); the ARN carries the region code.
        region=arn_match.group(1) if arn_match else "",
        alarm_name=_name(doc.get("AlarmName"), CLASSIC, "AlarmName"),
        state=_state(doc.get("NewStateValue"), CLASSIC, "NewStateValue"),
        previous_state=_text(doc.get("OldStateValue")),
        reason=_text(doc.get("NewStateReason")),
        event_time=_time(doc.get("StateChangeTime"), CLASSIC, "StateChangeTime"),
        alarm_arn=arn or "",
    )


def _alarm(shape: str, **fields: Any) -> Alarm:
    try:
        return Alarm(**fields)
    except ValidationError as err:  # the field checks above should leave nothing for pydantic to reject
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors())
        raise PoisonMessage(f"{shape}: {problems}") from err


def _object(doc: dict[str, Any], key: str, shape: str, path: str = "") -> dict[str, Any]:
    value = doc.get(key)
    if value is None:
        raise PoisonMessage(f"{shape}: {path or key} is missing")
    if not isinstance(value, dict):
        raise PoisonMessage(f"{shape}: {path or key} is {type(value).__name__}, expected an object")
    return value


def _name(value: Any, shape: str, path: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise PoisonMessage(f"{shape}: {path} is missing or empty")
    return value


def _state(value: Any, shape: str, path: str) -> AlarmState:
    if value is None:
        raise PoisonMessage(f"{shape}: {path} is missing")
    if not isinstance(value, str) or value not in AlarmState.__members__:
        raise PoisonMessage(f"{shape}: {path} {_show(value)} is not one of {_STATES}")
    return AlarmState(value)


def _account(value: Any, shape: str, path: str) -> str:
    if value is None:
        raise PoisonMessage(f"{shape}: {path} is missing")
    # Some producers send the account id as a JSON number; a lost leading zero then fails the check.
    if type(value) is int:
        value = str(value)
    if not isinstance(value, str) or not _ACCOUNT.match(value):
        raise PoisonMessage(f"{shape}: {path} {_show(value)} is not a 12-digit account id")
    return value


def _time(value: Any, shape: str, path: str) -> datetime:
    """CloudWatch writes `2026-05-12T20:00:00.000+0000`, EventBridge `2026-05-12T20:00:00Z`; both -> UTC."""
    if value is None:
        raise PoisonMessage(f"{shape}: {path} is missing")
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None:
        raise PoisonMessage(f"{shape}: {path} {_show(value)} is not an ISO-8601 time")
    # Without an offset the instant is a guess, and the chain rule orders by instants.
    if parsed.tzinfo is None:
        raise PoisonMessage(f"{shape}: {path} {_show(value)} has no UTC offset")
    return parsed.astimezone(UTC)


def _text(value: Any) -> str:
    """Optional display fields: a wrong type is dropped rather than costing the whole alarm."""
    return value if isinstance(value, str) else ""


def _alarm_arn(resources: Any) -> str:
    """EventBridge lists the alarm's ARN in `resources`; it is display data, so an odd list is ignored."""
    if not isinstance(resources, list):
        return ""
    return next((r for r in resources if isinstance(r, str) and _ALARM_ARN.match(r)), "")


def _show(value: Any) -> str:
    """A value for a one-line reason: repr, cut short so a hostile body can't flood the log."""
    shown = repr(value)
    return shown if len(shown) <= 60 else f"{shown[:57]}..."
