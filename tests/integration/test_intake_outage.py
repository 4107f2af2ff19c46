"""Transient is not poison: a Temporal outage longer than the queue's redrive window dead-letters nothing.

The conductor runs against a dev server of its own (a real `temporal server start-dev` on SQLite), which the
test stops and restarts on the same port and database; SQS is moto with a redrive policy of
maxReceiveCount 2 and a 3 s visibility timeout, so an intake that kept receiving during the outage would
have every valid ticket in the DLQ after ~6 s (the issue measured 10 of 10).
"""

import asyncio
import logging
import time

import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError

from conductor_worker.process.devserver import DevServer
from contracts.ids import ticket_job_id, ticket_workflow_id
from tests.helpers import (
    free_port,
    fresh_key,
    make_intake_queues,
    queue_depth,
    sqs_client,
    ticket_body,
    wait_for,
)

MAX_RECEIVE_COUNT = 2
VISIBILITY_SECONDS = 3
POISON = '{"key": "ENG-1", "fie'
OUTAGE_SECONDS = 3 * MAX_RECEIVE_COUNT * VISIBILITY_SECONDS  # 18 s


@pytest.fixture
def own_temporal(tmp_path):
    """A dev server this test may stop and restart (the session's `env` must stay up for the others)."""
    server = DevServer(tmp_path / "own-temporal", port=free_port(), ui_port=free_port())
    server.start()
    yield server
    server.stop()


async def _exists(client: Client, workflow_id: str) -> bool:
    try:
        await client.get_workflow_handle(workflow_id).describe()
        return True
    except RPCError:
        return False


@pytest.mark.timeout(90)
async def test_temporal_outage_dead_letters_no_valid_ticket(
    own_temporal, settings, aws, start_conductor, caplog
):
    caplog.set_level(logging.INFO, logger="conductor_worker")
    sqs = sqs_client(settings.model_copy(update={"aws_endpoint_url": aws}))
    queues = make_intake_queues(sqs, MAX_RECEIVE_COUNT, VISIBILITY_SECONDS)
    conductor = settings.model_copy(
        update={
            "temporal_address": own_temporal.address,
            "sqs_queue_url": queues["queue"],
            "aws_endpoint_url": aws,
            "sqs_visibility_timeout_seconds": VISIBILITY_SECONDS,
        }
    )
    await start_conductor(conductor)
    # Up and serving before the outage: one ticket gets its workflow.
    client = await Client.connect(own_temporal.address, data_converter=pydantic_data_converter)
    first = fresh_key()
    sqs.send_message(QueueUrl=queues["queue"], MessageBody=ticket_body(first))
    await wait_for(lambda: _exists(client, ticket_workflow_id("jira", first)), timeout=30)

    own_temporal.stop()
    outage_began = time.monotonic()
    keys = [fresh_key() for _ in range(20)]
    poison_id = ""
    for i, key in enumerate(keys):  # arriving across the first third of the outage
        sqs.send_message(QueueUrl=queues["queue"], MessageBody=ticket_body(key))
        if i == 10:
            poison_id = sqs.send_message(QueueUrl=queues["queue"], MessageBody=POISON)["MessageId"]
        await asyncio.sleep(OUTAGE_SECONDS / 3 / len(keys))
    await asyncio.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - outage_began)))
    # Long enough that SQS's redrive would have taken every ticket the intake kept receiving.
    assert queue_depth(conductor, queues["dlq"]) == 0
    own_temporal.start()
    restarted = time.monotonic()

    async def all_jobs_started() -> bool:
        found = await asyncio.gather(*(_exists(client, ticket_job_id("jira", k)) for k in keys))
        return all(found)

    await wait_for(all_jobs_started, timeout=45, interval=0.5)
    print(
        f"outage {restarted - outage_began:.1f} s; 20 jobs started {time.monotonic() - restarted:.1f} s after"
    )

    async def poison_dead_lettered():
        return queue_depth(conductor, queues["dlq"]) >= 1 and queue_depth(conductor, queues["queue"]) == 0

    await wait_for(poison_dead_lettered, timeout=20)
    dead = sqs.receive_message(
        QueueUrl=queues["dlq"], MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=1
    )["Messages"]
    assert [d["MessageAttributes"]["SourceMessageId"]["StringValue"] for d in dead] == [poison_id]
    reason = dead[0]["MessageAttributes"]["ConductorRejectReason"]["StringValue"]
    assert reason.startswith("body is not JSON")
    # One job per ticket: each ticket workflow ran once (no duplicate starts from redeliveries).
    for key in keys:
        runs = [w async for w in client.list_workflows(f"WorkflowId = '{ticket_workflow_id('jira', key)}'")]
        assert len(runs) == 1, key
    lines = [r.getMessage() for r in caplog.records]
    assert sum("intake stops receiving" in line for line in lines) >= 1
    assert sum("intake resumes" in line for line in lines) >= 1
    assert [line for line in lines if poison_id in line] == [
        f"poison message {poison_id} moved to the DLQ: {reason}"
    ]
    assert not [line for line in lines if "Traceback" in line or "poll failed" in line]
    assert dead[0]["Body"] == POISON  # kept as it arrived
