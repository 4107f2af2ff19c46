"""Every ticket is bounded at the edge: key form, text sizes, control characters, hostile JSON."""

import json

import pytest
from temporalio.contrib.pydantic import pydantic_data_converter

from conductor_worker.intake.messages import MAX_BODY_BYTES, parse_message
from conductor_worker.intake.poison import MAX_JSON_DEPTH, PoisonMessage
from contracts.jobs import JobSpec, ticket_work_item
from contracts.tickets import (
    DESCRIPTION_LIMIT_BYTES,
    KEY_MAX_LENGTH,
    LIST_LIMIT,
    TEXT_LIMIT,
    URL_LIMIT,
    TicketMessage,
)
from tests.helpers import EXAMPLES, ticket_body

ISSUE = json.loads((EXAMPLES / "tickets" / "ENG-123.json").read_text())
# Temporal refuses a payload over 2 MB (and warns from 512 KB).
TEMPORAL_PAYLOAD_LIMIT = 2 * 1024 * 1024


def poison_reason(body: str) -> str:
    with pytest.raises(PoisonMessage) as caught:
        parse_message(body)
    return caught.value.reason


def nested(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


def test_a_lowercase_key_is_the_same_ticket():
    assert parse_message(ticket_body("eng-2002")).key == "ENG-2002"
    assert parse_message(ticket_body(" Eng-2002 ")).key == "ENG-2002"


@pytest.mark.parametrize(
    "key",
    ["ENG", "ENG-", "-12", "1ENG-2", "ENG-0", "ENG-012", "EN G-1", "ENG-1/../x", "ÉNG-1", "ENG-12345678901"],
)
def test_keys_not_of_jiras_form_are_poison(key):
    assert "key" in poison_reason(ticket_body(key))


def test_a_300_character_key_is_poison_with_a_short_reason():
    reason = poison_reason(ticket_body("A" * 296 + "-123"))
    assert f"at most {KEY_MAX_LENGTH} characters" in reason
    assert len(reason) < 300  # the key is not copied whole into the log line and the DLQ attribute


def test_a_1_mb_description_is_cut_with_a_marker():
    ticket = parse_message(ticket_body("ENG-2020", description="x" * 1_000_000))
    assert len(ticket.description.encode()) <= DESCRIPTION_LIMIT_BYTES
    assert ticket.description.startswith("xxx")
    assert ticket.description.endswith(
        f"[conductor: description cut from 1000000 to {DESCRIPTION_LIMIT_BYTES} bytes; the whole text is on the ticket]"
    )
    # Idempotent: decoding it again (a workflow reading its input) changes nothing.
    assert TicketMessage.model_validate_json(ticket.model_dump_json()).model_dump() == ticket.model_dump()
    # The whole text stays with the parsed ticket (never serialized) for the intake's blob store.
    assert ticket.whole_description == "x" * 1_000_000 and ticket.description_was_cut
    assert "x" * 100_000 not in ticket.model_dump_json()


def test_the_largest_possible_ticket_and_its_job_spec_fit_a_temporal_payload():
    wide = "\U0001f600"  # 4 bytes in UTF-8, 12 as a JSON escape
    ticket = TicketMessage(
        key="A" * 32 + "-" + "9" * 10,
        summary=wide * TEXT_LIMIT,
        description=wide * DESCRIPTION_LIMIT_BYTES,
        url="h" * URL_LIMIT,
        project=wide * TEXT_LIMIT,
        issue_type=wide * TEXT_LIMIT,
        priority=wide * TEXT_LIMIT,
        components=[wide * TEXT_LIMIT] * LIST_LIMIT,
        labels=[wide * TEXT_LIMIT] * LIST_LIMIT,
    )
    spec = JobSpec(job_id="job/ticket/jira/x", work=ticket_work_item(ticket), ticket=ticket, branch="b")
    (payload,) = pydantic_data_converter.payload_converter.to_payloads([spec])
    assert len(payload.SerializeToString()) < TEMPORAL_PAYLOAD_LIMIT / 2


@pytest.mark.parametrize("field", ["summary", "project_name", "label"])
def test_text_past_jiras_255_characters_is_poison(field):
    issue = json.loads(json.dumps(ISSUE))
    long = "x" * (TEXT_LIMIT + 1)
    if field == "summary":
        issue["fields"]["summary"] = long
    elif field == "project_name":
        issue["fields"]["project"]["key"] = long
    else:
        issue["fields"]["labels"] = [long]
    assert "String should have at most 255 characters" in poison_reason(json.dumps(issue))


def test_control_characters_are_dropped_and_the_summary_is_one_line():
    ticket = parse_message(
        ticket_body("ENG-7", summary="Fix\x1b[31m red\r\nlogin\x07", description="a\x1bb\r\nc\td")
    )
    assert ticket.summary == "Fix [31m red  login"
    assert ticket.description == "ab\nc\td"


@pytest.mark.parametrize(
    "body",
    [
        ticket_body("ENG-8", summary="Fix\u0000login"),
        ticket_body("ENG-8", description="a\u0000b"),
        json.dumps({**ISSUE, "fields": {**ISSUE["fields"], "x\u0000": 1}}),
    ],
)
def test_nul_anywhere_is_poison(body):
    assert "\\u0000" in body  # as JSON carries it
    assert "NUL character" in poison_reason(body)


def test_10000_deep_json_is_poison_not_a_recursion_error():
    assert poison_reason(nested(10_000)) == f"body is JSON nested deeper than {MAX_JSON_DEPTH} levels"
    # Shallow enough for the decoder, too deep for us: refused by the walk, which has no recursion.
    assert poison_reason(nested(MAX_JSON_DEPTH)).endswith(f"nested deeper than {MAX_JSON_DEPTH} levels")
    assert "unknown message shape" in poison_reason(nested(MAX_JSON_DEPTH - 1))  # the leaf is a level


def test_10000_deep_json_inside_an_sns_envelope_is_poison():
    envelope = json.loads((EXAMPLES / "alarms" / "sns-envelope-alarm.json").read_text())
    envelope["Message"] = nested(10_000)
    assert "SNS notification: Message is JSON nested deeper" in poison_reason(json.dumps(envelope))


def test_a_body_over_sqs_size_is_poison_before_parsing():
    assert poison_reason(" " * (MAX_BODY_BYTES + 1)) == f"body is over {MAX_BODY_BYTES} bytes"
    assert poison_reason("é" * (MAX_BODY_BYTES // 2 + 1)) == f"body is over {MAX_BODY_BYTES} bytes"
