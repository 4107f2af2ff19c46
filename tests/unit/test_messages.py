"""SQS bodies -> TicketMessage; everything else is a poison message with a readable reason."""

import json

import pytest

from conductor_worker.messages import PoisonMessage, parse_message
from tests.helpers import EXAMPLES

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
        (json.dumps({"source": "aws.cloudwatch", "detail": {}}), "not handled yet"),
    ],
)
def test_poison_messages_say_why(body, reason):
    with pytest.raises(PoisonMessage, match=reason):
        parse_message(body)
