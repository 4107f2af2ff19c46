"""`conductor dlq list|show|redrive`, run as a person would (a subprocess), on moto SQS and a real conductor."""

import asyncio
import os
import sys

import pytest

from contracts.ids import ticket_workflow_id
from contracts.jobs import JobState
from tests.helpers import fresh_key, queue_depth, sqs_client, ticket_body, ticket_result, wait_for

POISON = '{"key": "ENG-1",\x01 "fields": '


async def conductor_cli(settings, *args: str) -> tuple[int, str, str]:
    env = {
        **os.environ,
        "CONDUCTOR_SQS_QUEUE_URL": settings.sqs_queue_url,
        "CONDUCTOR_AWS_ENDPOINT_URL": settings.aws_endpoint_url,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "conductor_worker",
        "dlq",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode, out.decode(), err.decode()


def dead_letter_by_sqs(sqs, queues, body: str) -> None:
    """The way an outage used to lose a ticket: received maxReceiveCount (3) times, never deleted."""
    sqs.send_message(QueueUrl=queues["queue"], MessageBody=body)
    for _ in range(3):
        assert sqs.receive_message(QueueUrl=queues["queue"], VisibilityTimeout=0)["Messages"]
    # The next receive finds it over the count: SQS moves it to the DLQ instead of returning it.
    assert "Messages" not in sqs.receive_message(QueueUrl=queues["queue"], VisibilityTimeout=0)


async def runs_of(client, key: str) -> int:
    query = f"WorkflowId = '{ticket_workflow_id('jira', key)}'"
    return len([w async for w in client.list_workflows(query)])


@pytest.mark.timeout(120)
async def test_dlq_list_show_and_redrive_bring_a_ticket_to_its_job_exactly_once(
    client, intake_settings, queues, start_conductor
):
    sqs = sqs_client(intake_settings)
    lost = fresh_key()
    dead_letter_by_sqs(sqs, queues, ticket_body(lost))
    poison_id = sqs.send_message(QueueUrl=queues["queue"], MessageBody=POISON)["MessageId"]
    await start_conductor(intake_settings)
    await wait_for(lambda: _depth_is(intake_settings, queues["dlq"], 2), timeout=30)

    code, out, err = await conductor_cli(intake_settings, "list")
    assert code == 0, err
    assert "2 messages in" in err
    assert "moved by the queue's redrive policy" in out  # the ticket SQS moved: no reason recorded
    assert "body is not JSON" in out  # the intake's reason for the poison
    assert "\\x01" in out  # control characters escaped in the preview
    heads = {line.split()[0]: line for line in out.splitlines() if not line.startswith(" ")}
    ids = list(heads)
    assert len(ids) == 2
    # Listing leaves the DLQ as it was: both messages visible again at once.
    code, again, _ = await conductor_cli(intake_settings, "list")
    assert [line.split()[0] for line in again.splitlines() if not line.startswith(" ")] == ids

    poison_dlq_id = next(i for i, line in heads.items() if "not JSON" in line)
    code, shown, _ = await conductor_cli(intake_settings, "show", poison_dlq_id)
    assert code == 0
    assert f"source message:  {poison_id}" in shown
    assert POISON in shown  # the whole body, as it arrived
    code, _, err = await conductor_cli(intake_settings, "show", "no-such-id")
    assert code == 1 and "no message no-such-id" in err

    ticket_dlq_id = next(i for i in ids if i != poison_dlq_id)
    code, out, err = await conductor_cli(intake_settings, "redrive", ticket_dlq_id)
    assert code == 0, err
    assert out.startswith(f"redriven {ticket_dlq_id} -> ")
    assert (await ticket_result(client, lost)).state == JobState.SUCCEEDED
    # Repeating the redrive sends nothing: the message left the DLQ.
    code, _, err = await conductor_cli(intake_settings, "redrive", ticket_dlq_id)
    assert code == 1 and f"not in the DLQ: {ticket_dlq_id}" in err

    # Two copies of one ticket in the DLQ (a redrive killed between its send and its delete leaves
    # one behind): `--all` sends both, and the ticket still makes one job. The poison comes back.
    twice = fresh_key()
    for _ in range(2):
        sqs.send_message(QueueUrl=queues["dlq"], MessageBody=ticket_body(twice))
    code, out, err = await conductor_cli(intake_settings, "redrive", "--all")
    assert code == 0, err
    assert out.count("redriven ") == 3
    assert (await ticket_result(client, twice)).state == JobState.SUCCEEDED
    await wait_for(lambda: _depth_is(intake_settings, queues["queue"], 0), timeout=30)
    await wait_for(lambda: _depth_is(intake_settings, queues["dlq"], 1), timeout=30)
    assert await runs_of(client, lost) == 1
    assert await runs_of(client, twice) == 1
    code, out, _ = await conductor_cli(intake_settings, "list")
    assert "body is not JSON" in out and ticket_dlq_id not in out


async def _depth_is(settings, url: str, depth: int) -> bool:
    return queue_depth(settings, url) == depth
