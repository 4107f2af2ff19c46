"""Hostile and oversized tickets through the real intake: each gets a bounded outcome, no workflow wedges.

The issue's measurements, each sent to the queue in one batch with a good ticket: a 1 MB description (was a
2,097,424-byte child start, wedged), a 300-character key (was accepted, then "File name too long"), a
lower-case key (was a second job), NUL in a summary (killed the code step), 10,000-deep JSON (a
RecursionError past the poison path that cost the batch's good tickets).
"""

import logging
import random

import pytest
from temporalio.api.enums.v1 import EventType

from contracts.ids import ticket_job_id, ticket_workflow_id
from contracts.jobs import JobState
from contracts.tickets import DESCRIPTION_LIMIT_BYTES
from tests.helpers import fresh_key, queue_depth, sqs_client, ticket_body, ticket_result, wait_for


async def workflow_task_failures(client, workflow_id: str) -> int:
    handle = client.get_workflow_handle(workflow_id)
    return len(
        [
            e
            async for e in handle.fetch_history_events()
            if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
        ]
    )


async def runs_of(client, workflow_id: str) -> int:
    return len([w async for w in client.list_workflows(f"WorkflowId = '{workflow_id}'")])


@pytest.mark.timeout(120)
async def test_hostile_tickets_each_get_a_bounded_outcome(
    client, intake_settings, queues, start_conductor, caplog
):
    caplog.set_level(logging.INFO, logger="conductor_worker.intake.sqs")
    sqs = sqs_client(intake_settings)
    big, lower, good = fresh_key(), fresh_key(), fresh_key()
    number = random.randrange(10**6, 10**7)
    bodies = {
        "big": ticket_body(big, description="x" * 1_000_000),
        "lower": ticket_body(lower.lower()),
        "upper-twin": ticket_body(lower),
        "good": ticket_body(good),
        "300-key": ticket_body("A" * 292 + f"-{number}"),
        "nul": ticket_body(fresh_key(), summary="Fix\u0000login"),
        "deep": '{"a": ' * 10_000 + "1" + "}" * 10_000,
    }
    assert len(bodies["big"]) > 1_000_000
    # One at a time: a batch send is limited to 1 MiB in all. They are received together all the same.
    ids = {
        name: sqs.send_message(QueueUrl=queues["queue"], MessageBody=body)["MessageId"]
        for name, body in bodies.items()
    }
    await start_conductor(intake_settings)

    for key in (big, lower, good):
        assert (await ticket_result(client, key)).state == JobState.SUCCEEDED, key

    async def three_dead_lettered():
        return (
            queue_depth(intake_settings, queues["dlq"]) == 3
            and queue_depth(intake_settings, queues["queue"]) == 0
        )

    await wait_for(three_dead_lettered, timeout=30)
    dead = sqs.receive_message(
        QueueUrl=queues["dlq"], MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=1
    )["Messages"]
    reasons = {
        d["MessageAttributes"]["SourceMessageId"]["StringValue"]: d["MessageAttributes"][
            "ConductorRejectReason"
        ]["StringValue"]
        for d in dead
    }
    assert set(reasons) == {ids["300-key"], ids["nul"], ids["deep"]}
    assert "a Jira key has at most 43 characters; this one has 300" in reasons[ids["300-key"]]
    assert reasons[ids["nul"]] == "body has a NUL character in a string"
    assert reasons[ids["deep"]] == "body is JSON nested deeper than 100 levels"
    for name in ("300-key", "nul", "deep"):  # one line each
        lines = [r.getMessage() for r in caplog.records if ids[name] in r.getMessage()]
        assert lines == [f"poison message {ids[name]} moved to the DLQ: {reasons[ids[name]]}"]
    assert not [r for r in caplog.records if r.exc_info]  # no traceback anywhere in the intake

    # eng-N and ENG-N are one ticket: one workflow, one run.
    assert await runs_of(client, ticket_workflow_id("jira", lower)) == 1
    # The big description reached the agent cut, with its marker, carried once in the job's spec.
    job = client.get_workflow_handle(ticket_job_id("jira", big))
    started = [e async for e in job.fetch_history_events()][0]
    spec_bytes = started.workflow_execution_started_event_attributes.input.payloads[0].data
    assert len(spec_bytes) < 2 * DESCRIPTION_LIMIT_BYTES
    assert b"[conductor: description cut from 1000000 to 65536 bytes" in spec_bytes
    # And nothing wedged: no workflow task failed in any of the workflows these messages started.
    for key in (big, lower, good):
        for workflow_id in (ticket_workflow_id("jira", key), ticket_job_id("jira", key)):
            assert await workflow_task_failures(client, workflow_id) == 0, workflow_id
