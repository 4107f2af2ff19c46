"""SQS bodies -> TicketMessage; everything else is a poison message with a readable reason."""

import copy
import json

import pytest

from conductor_worker.intake.messages import parse_message
from conductor_worker.intake.poison import PoisonMessage
from tests.helpers import EXAMPLES
from tests.malformed_messages import MALFORMED_TICKETS

ISSUE = json.loads((EXAMPLES / "tickets" / "ENG-123.json").read_text())


def test_jira_issue_json():
    ticket = parse_message(json.dumps(ISSUE))
    assert ticket.key == "ENG-123"
    assert ticket.summary == "Login fails after session timeout"
    assert ticket.description == "Users are redirected to a blank page after their session expires."
    assert ticket.url == "https://your-domain.atlassian.net/browse/ENG-123"
    assert (ticket.project, ticket.components, ticket.labels) == (
        "ENG",
        ["Authentication"],
        ["auth", "session"],
    )


def test_jira_webhook_envelope_gives_the_same_ticket():
    envelope = {"webhookEvent": "jira:issue_created", "timestamp": 1, "issue": ISSUE}
    assert parse_message(json.dumps(envelope)) == parse_message(json.dumps(ISSUE))


def test_plain_string_description_from_api_v2():
    issue = {**ISSUE, "fields": {**ISSUE["fields"], "description": "plain text"}}
    assert parse_message(json.dumps(issue)).description == "plain text"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "expected an object"),
        ('{"hello": 1}', "unknown message shape"),
        (json.dumps({"key": "ENG-1", "fields": {}}), "summary"),
        (json.dumps({**ISSUE, "key": "../../etc"}), "key"),
        (json.dumps({"webhookEvent": "x", "issue": {"key": "ENG-2"}}), "no 'fields'"),
        (json.dumps({"source": "aws.cloudwatch", "detail": {}}), "detail-type is missing"),
        (json.dumps({**ISSUE, "fields": {**ISSUE["fields"], "labels": 7}}), "fields.labels is int"),
    ],
)
def test_poison_messages_say_why(body, reason):
    with pytest.raises(PoisonMessage, match=reason):
        parse_message(body)


@pytest.mark.parametrize("name", sorted(MALFORMED_TICKETS))
def test_every_shared_malformed_ticket_is_poison(name):
    with pytest.raises(PoisonMessage) as caught:
        parse_message(MALFORMED_TICKETS[name])
    assert caught.value.reason and "\n" not in caught.value.reason


def _paths(node, prefix=()):
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        yield (*prefix, key)
        yield from _paths(child, (*prefix, key))


@pytest.mark.parametrize(
    "fixture", ["tickets/ENG-123.json", "alarms/eventbridge-alarm.json", "alarms/classic-sns-alarm.json"]
)
def test_no_damaged_fixture_crashes_the_parser(fixture):
    """Each field of a good body removed or given a wrong type, bare and in SNS: parsed or poison, nothing else."""
    doc = json.loads((EXAMPLES / fixture).read_text())
    for path in _paths(doc):
        for value in (KeyError, None, 7, 1.5, True, "", [], [1], {}, {"a": 1}):
            damaged = copy.deepcopy(doc)
            parent = damaged
            for key in path[:-1]:
                parent = parent[key]
            if value is KeyError:
                del parent[path[-1]]
            else:
                parent[path[-1]] = value
            for body in (
                json.dumps(damaged),
                json.dumps({"Type": "Notification", "Message": json.dumps(damaged)}),
            ):
                try:
                    parse_message(body)
                except PoisonMessage:
                    pass
