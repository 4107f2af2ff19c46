"""An SQS outage is one warning and a backoff, not a traceback per receive (a moto restart once logged 42 a
minute); when SQS is back the intake says so once and serves again."""

import asyncio
import logging

import boto3
import pytest
from moto.server import ThreadedMotoServer

from contracts.jobs import JobState
from tests.helpers import free_port, fresh_key, make_intake_queues, ticket_body, ticket_result

OUTAGE_SECONDS = 8


class RestartableMoto:
    """A moto server of this test's own (the session's serves the other tests) on a fixed port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._server: ThreadedMotoServer | None = None

    def start(self) -> None:
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


@pytest.fixture
def own_moto(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    moto = RestartableMoto()
    moto.start()
    yield moto
    moto.stop()  # after the conductor has stopped: requested before start_conductor


@pytest.mark.timeout(90)
async def test_sqs_outage_is_one_line_and_a_backoff(own_moto, settings, start_conductor, client, caplog):
    caplog.set_level(logging.DEBUG, logger="conductor_worker.intake.sqs")
    endpoint = own_moto.endpoint
    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1")
    queues = make_intake_queues(sqs)
    conductor = settings.model_copy(update={"sqs_queue_url": queues["queue"], "aws_endpoint_url": endpoint})
    await start_conductor(conductor)
    await asyncio.sleep(2)  # serving: long polls in flight

    own_moto.stop()
    await asyncio.sleep(OUTAGE_SECONDS)
    own_moto.start()
    # moto keeps nothing across a restart: the queue comes back as an operator would recreate it.
    sqs.create_queue(QueueName=queues["queue"].rsplit("/", 1)[-1])
    key = fresh_key()
    sqs.send_message(QueueUrl=queues["queue"], MessageBody=ticket_body(key))
    assert (await ticket_result(client, key)).state == JobState.SUCCEEDED
    records = [r for r in caplog.records if r.name == "conductor_worker.intake.sqs"]
    warnings = [r.getMessage() for r in records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings  # 4 pollers, many failed receives: one line
    assert warnings[0].startswith("SQS receive failed (")
    assert not [r for r in records if r.exc_info]  # no traceback
    failed_again = [r for r in records if r.getMessage().startswith("SQS receive failed again")]
    # Backoff: 4 pollers at 1, 2, 4 s... make a handful of retries in the outage, not one per second each.
    assert len(failed_again) <= 4 * 4, len(failed_again)
    assert any(r.getMessage().startswith("SQS receive works again after") for r in records)
