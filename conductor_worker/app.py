"""The conductor process: gateway, Temporal worker and SQS intake, started and stopped together."""

import asyncio
import logging

import boto3

from conductor_worker.client import connect
from conductor_worker.config import Settings
from conductor_worker.gateway import start_gateway
from conductor_worker.intake import SqsIntake
from conductor_worker.worker import build_worker

log = logging.getLogger(__name__)


def sqs_client(settings: Settings):
    return boto3.client(
        "sqs", region_name=settings.aws_region, endpoint_url=settings.aws_endpoint_url or None
    )


async def run_conductor(settings: Settings, stop: asyncio.Event) -> None:
    """Serve until `stop` is set, then stop intake first, drain the worker, and close the gateway."""
    gateway, port = await start_gateway(settings)
    if settings.gateway_listen.endswith(":0"):
        host = settings.gateway_listen.rsplit(":", 1)[0]
        settings = settings.model_copy(update={"gateway_public_address": f"{host}:{port}"})
    client = await connect(settings)
    worker = build_worker(client, settings)
    intake_stop = asyncio.Event()
    tasks = [asyncio.create_task(worker.run(), name="worker")]
    if settings.sqs_queue_url:
        intake = SqsIntake(client, settings, sqs_client(settings))
        tasks.append(asyncio.create_task(intake.run(intake_stop), name="intake"))
    else:
        log.info("no CONDUCTOR_SQS_QUEUE_URL: SQS intake is off")
    log.info(
        "conductor serving (task queue %s, Temporal %s)",
        settings.task_queue,
        settings.temporal_address,
    )
    stop_wait = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([stop_wait, *tasks], return_when=asyncio.FIRST_COMPLETED)
    for task in done - {stop_wait}:
        task.result()  # a component that died on its own takes the process down, loudly
    intake_stop.set()
    await worker.shutdown()
    await asyncio.gather(*tasks, return_exceptions=True)
    await gateway.stop(grace=5)
    log.info("conductor stopped")
