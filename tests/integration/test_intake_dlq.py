"""Poison messages go to the DLQ with one clear log line; the intake keeps serving good ones."""

import asyncio
import json
import logging

import pytest

from conductor_worker.intake.sqs import Outcome, SqsIntake
from contracts.jobs import JobState
from tests.helpers import fresh_key, queue_depth, sqs_client, ticket_body, ticket_result, wait_for
from tests.malformed_messages import MALFORMED_ALARMS, MALFORMED_TICKETS

POISON = {
    "not-json": "{this is not json",
    "wrong-shape": json.dumps({"hello": "world"}),
    "bad-key": ticket_body("not a key"),
    "no-summary": json.dumps({"key": "ENG-9", "fields": {"project": {"key": "ENG"}}}),
}


@pytest.mark.parametrize("kind", sorted(POISON))
async def test_poison_message_goes_to_dlq_and_the_next_ticket_still_runs(
    kind, client, intake_settings, queues, start_conductor, caplog
):
    caplog.set_level(logging.INFO, logger="conductor_worker.intake.sqs")
    sqs = sqs_client(intake_settings)
    poison_id = sqs.send_message(QueueUrl=queues["queue"], MessageBody=POISON[kind])["MessageId"]
    await start_conductor(intake_settings)

    async def dead_lettered():
        got = sqs.receive_message(
            QueueUrl=queues["dlq"], MessageAttributeNames=["All"], WaitTimeSeconds=1
        ).get("Messages", [])
        return got[0] if got else None

    dead = await wait_for(dead_lettered, timeout=30)
    assert dead["Body"] == POISON[kind]  # nothing lost: the body is kept as it arrived
    assert dead["MessageAttributes"]["SourceMessageId"]["StringValue"] == poison_id
    reason = dead["MessageAttributes"]["ConductorRejectReason"]["StringValue"]

    async def log_lines():
        return [r.getMessage() for r in caplog.records if poison_id in r.getMessage()]

    assert await wait_for(log_lines, timeout=10) == [f"poison message {poison_id} moved to the DLQ: {reason}"]

    # The conductor is still serving: the next good message gets its job.
    key = fresh_key()
    sqs.send_message(QueueUrl=queues["queue"], MessageBody=ticket_body(key))
    assert (await ticket_result(client, key)).state == JobState.SUCCEEDED
    assert queue_depth(intake_settings, queues["queue"]) == 0


async def test_without_a_redrive_policy_the_configured_dlq_is_used(
    client, intake_settings, start_conductor, aws
):
    sqs = sqs_client(intake_settings)
    plain = sqs.create_queue(QueueName="plain-intake")["QueueUrl"]
    dlq = sqs.create_queue(QueueName="plain-intake-dlq")["QueueUrl"]
    settings = intake_settings.model_copy(update={"sqs_queue_url": plain, "sqs_dlq_url": dlq})
    sqs.send_message(QueueUrl=plain, MessageBody="[]")
    await start_conductor(settings)
    await wait_for(lambda: _depth(settings, dlq), timeout=30)
    assert queue_depth(settings, plain) == 0


async def _depth(settings, url) -> int:
    return queue_depth(settings, url)


async def test_every_malformed_shape_lands_in_the_dlq_with_one_line_each(
    client, intake_settings, queues, start_conductor, caplog
):
    caplog.set_level(logging.INFO, logger="conductor_worker.intake.sqs")
    sqs = sqs_client(intake_settings)
    bodies = {
        **{f"alarm:{k}": v for k, v in MALFORMED_ALARMS.items()},
        **{f"ticket:{k}": v for k, v in MALFORMED_TICKETS.items()},
    }
    sent = {
        sqs.send_message(QueueUrl=queues["queue"], MessageBody=body)["MessageId"]: name
        for name, body in bodies.items()
    }
    await start_conductor(intake_settings)

    async def all_logged():
        lines = [r.getMessage() for r in caplog.records if "moved to the DLQ" in r.getMessage()]
        return lines if len(lines) >= len(sent) else None

    lines = await wait_for(all_logged, timeout=60)
    for message_id, name in sent.items():
        mine = [line for line in lines if f"poison message {message_id} moved to the DLQ: " in line]
        assert len(mine) == 1, (name, mine)
    assert queue_depth(intake_settings, queues["dlq"]) == len(sent)
    # Still serving after all of them.
    key = fresh_key()
    sqs.send_message(QueueUrl=queues["queue"], MessageBody=ticket_body(key))
    assert (await ticket_result(client, key)).state == JobState.SUCCEEDED


async def test_a_poison_message_delivered_twice_is_dead_lettered_once(
    client, intake_settings, queues, caplog
):
    """SQS delivers at least once: two copies of one poison message make one DLQ entry and one log line."""
    caplog.set_level(logging.INFO, logger="conductor_worker.intake.sqs")
    copy = {"MessageId": "m-1", "ReceiptHandle": "r-1", "Body": POISON["not-json"]}
    intake = SqsIntake(client, intake_settings, sqs_client(intake_settings))

    both = await asyncio.gather(intake.handle(dict(copy)), intake.handle(dict(copy)))
    assert both == [Outcome.DONE, Outcome.LEAVE]
    assert await intake.handle(dict(copy)) is Outcome.DONE  # a later copy is only deleted

    assert queue_depth(intake_settings, queues["dlq"]) == 1
    assert [r.getMessage() for r in caplog.records if "m-1" in r.getMessage()] == [
        "poison message m-1 moved to the DLQ: body is not JSON (Expecting property name enclosed in double quotes)"
    ]
