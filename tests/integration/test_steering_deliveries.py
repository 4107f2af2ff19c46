"""The model gateway's side of the `steering_delivered` signal (model_gateway/delivery.py) on the dev server:
once per new instruction per attempt, harmless for a job that has ended or never was, and the mailbox's
record still written for runs from before the signal."""

import pytest

from contracts.ids import safe_name
from model_gateway.delivery import SteeringDeliveries
from stores.blob_store import LocalBlobStore
from stores.mailbox import JobMailbox

pytestmark = pytest.mark.timeout(60)

JOB = "job/ticket/jira/NOPE-1"


async def test_each_instruction_is_told_once_and_a_missing_job_is_no_error(client, tmp_path, caplog):
    mailbox = JobMailbox(LocalBlobStore(tmp_path))
    deliveries = SteeringDeliveries(client, mailbox)
    deliveries.carried(JOB, 1, 0)  # a request without instructions: nothing to tell
    await deliveries.settled()
    assert mailbox.delivered(JOB, 1) == 0

    deliveries.carried(JOB, 1, 2)  # no such workflow: Temporal says NOT_FOUND, which is not an error
    await deliveries.settled()
    assert mailbox.delivered(JOB, 1) == 2
    assert not [r for r in caplog.records if r.levelname in ("WARNING", "ERROR")]

    # The attempt's next requests carry the same instructions: nothing is sent or written again.
    mailbox.blobs.delete(f"jobs/{safe_name(JOB)}/attempt-1/steering-delivered/000002")
    for _ in range(3):
        deliveries.carried(JOB, 1, 2)
    await deliveries.settled()
    assert mailbox.delivered(JOB, 1) == 0
    # A new instruction, or another attempt, is told.
    deliveries.carried(JOB, 1, 3)
    deliveries.carried(JOB, 2, 1)
    await deliveries.settled()
    assert (mailbox.delivered(JOB, 1), mailbox.delivered(JOB, 2)) == (3, 1)
