"""Malformed intake bodies (name -> SQS body), shared by the parser unit tests and the DLQ integration test.

Each is a good fixture with one thing broken, so the reason it is rejected is that one thing.
"""

import copy
import json
from pathlib import Path
from typing import Any

_EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
_EVENT = json.loads((_EXAMPLES / "alarms" / "eventbridge-alarm.json").read_text())
_ENVELOPE = json.loads((_EXAMPLES / "alarms" / "sns-envelope-alarm.json").read_text())
_CLASSIC = json.loads((_EXAMPLES / "alarms" / "classic-sns-alarm.json").read_text())
_ISSUE = json.loads((_EXAMPLES / "tickets" / "ENG-123.json").read_text())
_GONE = object()


def _edit(doc: dict[str, Any], path: str, value: Any = _GONE) -> dict[str, Any]:
    """A copy of `doc` with the dotted `path` set to `value`, or removed when no value is given."""
    out = copy.deepcopy(doc)
    *parents, last = path.split(".")
    node = out
    for key in parents:
        node = node[key]
    if value is _GONE:
        del node[last]
    else:
        node[last] = value
    return out


def _event(path: str, value: Any = _GONE) -> str:
    return json.dumps(_edit(_EVENT, path, value))


def _classic(path: str, value: Any = _GONE) -> str:
    return json.dumps(_edit(_CLASSIC, path, value))


def _in_sns(message: str) -> str:
    return json.dumps({**_ENVELOPE, "Message": message})


MALFORMED_ALARMS: dict[str, str] = {
    "eventbridge-no-detail": _event("detail"),
    "eventbridge-detail-not-object": _event("detail", "ALARM"),
    "eventbridge-empty-detail": json.dumps({"source": "aws.cloudwatch", "detail": {}}),
    "eventbridge-other-detail-type": _event("detail-type", "CloudWatch Alarm Configuration Change"),
    "eventbridge-no-alarm-name": _event("detail.alarmName"),
    "eventbridge-no-state": _event("detail.state"),
    "eventbridge-bad-state": _event("detail.state.value", "FOO"),
    "eventbridge-bad-time": _event("detail.state.timestamp", "yesterday"),
    "eventbridge-time-without-offset": _event("detail.state.timestamp", "2026-05-12T20:00:00"),
    "eventbridge-no-time": json.dumps(_edit(_edit(_EVENT, "detail.state.timestamp"), "time")),
    "eventbridge-bad-account": _event("account", "12"),
    "sns-no-message": json.dumps({k: v for k, v in _ENVELOPE.items() if k != "Message"}),
    "sns-message-not-json": _in_sns("ALARM: debian-cpu-spin-high-cpu"),
    "sns-message-array": _in_sns("[1, 2]"),
    "sns-message-unknown-shape": _in_sns(json.dumps({"hello": "world"})),
    "sns-message-is-an-envelope": _in_sns(json.dumps(_ENVELOPE)),
    "sns-message-bad-alarm": _in_sns(_event("detail.state.value", "FOO")),
    "classic-no-new-state": _classic("NewStateValue"),
    "classic-bad-state": _classic("NewStateValue", "ALARMING"),
    "classic-bad-time": _classic("StateChangeTime", "yesterday"),
    "classic-bad-account": _classic("AWSAccountId", "12"),
    "classic-no-account": _classic("AWSAccountId"),
    "classic-empty-alarm-name": _classic("AlarmName", ""),
    "classic-bad-arn": _classic("AlarmArn", "arn:aws:sns:us-west-2:204772699175:conductor-alarms"),
}

MALFORMED_TICKETS: dict[str, str] = {
    "not-json": "{this is not json",
    "json-array": "[1, 2]",
    "unknown-shape": json.dumps({"hello": "world"}),
    "jira-without-summary": json.dumps({"key": "ENG-9", "fields": {"project": {"key": "ENG"}}}),
    "bad-key": json.dumps({**_ISSUE, "key": "../../etc"}),
    "webhook-without-fields": json.dumps({"webhookEvent": "jira:issue_created", "issue": {"key": "ENG-2"}}),
    "labels-not-a-list": json.dumps(_edit(_ISSUE, "fields.labels", 7)),
    "sns-ticket-without-summary": _in_sns(json.dumps(_edit(_ISSUE, "fields.summary"))),
}
