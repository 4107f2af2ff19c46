"""The conductor process: gateway, Temporal worker and SQS intake, started and stopped together."""

import asyncio
import logging

import boto3
from opentelemetry.sdk.trace import TracerProvider

from conductor_worker.config import Settings
from conductor_worker.gateway.server import start_gateway
from conductor_worker.intake.sqs import SqsIntake
from conductor_worker.intake.webhooks import webhook_router
from conductor_worker.metrics import client_meter, metrics_runtime
from conductor_worker.pool_api.rest_api import start_rest_api
from conductor_worker.process.client import connect
from conductor_worker.process.drain import (
    DrainLog,
    clear_ready_file,
    running_agents,
    watch_flag,
    write_ready_file,
)
from conductor_worker.process.job_gauge import report_job_states
from conductor_worker.process.tracing import client_interceptors, tracer_of, tracer_provider
from conductor_worker.process.worker import build_launcher, build_workers
from model_gateway.routes import router_from_settings

log = logging.getLogger(__name__)

# In-flight agent calls (an upload, a download) get this long to finish before the gateway closes.
GATEWAY_GRACE_SECONDS = 5.0


def sqs_client(settings: Settings):
    return boto3.client(
        "sqs", region_name=settings.aws_region, endpoint_url=settings.aws_endpoint_url or None
    )


async def run_conductor(
    settings: Settings, stop: asyncio.Event, tracing: TracerProvider | None = None
) -> None:
    """Serve until `stop` is set or the shutdown flag says true, then drain (conductor_worker/process/drain.py).
    `tracing`: where spans go; by default the OTLP exporter the settings name, if any."""
    tracing = tracing or tracer_provider(settings)
    clear_ready_file(settings.ready_path)
    settings.shutdown_flag_path.parent.mkdir(parents=True, exist_ok=True)  # where the deploy writes it
    # The gateway turns what agents say into calls on their jobs: it needs the client first.
    client = await connect(
        settings,
        runtime=metrics_runtime(settings.metrics_listen) if settings.metrics_listen else None,
        interceptors=client_interceptors(tracing),
    )
    gateway, port = await start_gateway(settings, client, tracer_of(tracing) if tracing else None)
    if settings.gateway_listen.endswith(":0") and not settings.gateway_public_address:
        host = settings.gateway_listen.rsplit(":", 1)[0]
        settings = settings.model_copy(update={"gateway_public_address": f"{host}:{port}"})
    rest, model_upstream = None, None
    routers = []
    if settings.model_gateway_needed:
        model_router, model_upstream = router_from_settings(settings, client)
        routers.append(model_router)
    if settings.webhooks_enabled:
        if not settings.rest_listen:  # senders need a fixed address
            raise ValueError(
                "webhook secrets are set but CONDUCTOR_REST_LISTEN is not: set the address to serve them on"
            )
        routers.append(
            webhook_router(
                client,
                settings.task_queue,
                settings.github_webhook_secret.get_secret_value(),
                settings.jira_webhook_secret.get_secret_value(),
                settings.github_trigger_label,
                settings.open_blob_store(),
            )
        )
    # The model gateway needs the HTTP server even without the pool API: then on the gateway's host.
    http_listen = settings.rest_listen or (
        f"{settings.gateway_listen.rsplit(':', 1)[0]}:0" if routers else ""
    )
    if http_listen:
        rest = await start_rest_api(client, settings, http_listen, routers)
    if routers and not settings.model_gateway_public_url:
        host = http_listen.rsplit(":", 1)[0].strip("[]")
        host = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
        public = f"{rest.scheme}://{host}:{rest.port}"
        settings = settings.model_copy(update={"model_gateway_public_url": public})
    workers = build_workers(client, settings)
    intake_stop = asyncio.Event()
    worker_tasks = [asyncio.create_task(w.run(), name=f"worker {w.task_queue}") for w in workers]
    intake_task = None
    if settings.sqs_queue_url:
        intake = SqsIntake(client, settings, sqs_client(settings), tracer_of(tracing))
        intake_task = asyncio.create_task(intake.run(intake_stop), name="intake")
    else:
        log.info("no CONDUCTOR_SQS_QUEUE_URL: SQS intake is off")
    log.info(
        "status comments on tickets from: %s; incident reports as GitHub issues: %s",
        ", ".join(sorted(settings.status_comment_sources)) or "none",
        "on" if settings.incident_reports_enabled else "off",
    )
    gauge = None
    if settings.metrics_listen:
        gauge = asyncio.create_task(
            report_job_states(
                client,
                client_meter(client),
                settings.task_queue,
                intake_stop,
                settings.metrics_jobs_gauge_seconds,
            ),
            name="jobs gauge",
        )
    flag_watch = asyncio.create_task(watch_flag(settings.shutdown_flag_path, stop), name="shutdown-flag")
    log.info(
        "conductor serving (replica %s; task queues %s; Temporal %s; drains when %s says true, "
        "then writes %s)",
        settings.replica,
        ", ".join(w.task_queue for w in workers),
        settings.temporal_address,
        settings.shutdown_flag_path,
        settings.ready_path,
    )
    tasks = [t for t in (*worker_tasks, intake_task, rest and rest.task) if t is not None]
    stop_wait = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait([stop_wait, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for task in done - {stop_wait}:
            task.result()  # a component that died on its own takes the process down, loudly
    finally:
        stop_wait.cancel()
        flag_watch.cancel()
    flagged = flag_watch.done() and not flag_watch.cancelled() and flag_watch.result()
    drain = DrainLog("shutdown flag file" if flagged else "stop requested (signal)")
    log.info("draining (%s): intake, then worker, then gateway and REST API", drain.trigger)

    with drain.stage("intake", "SQS intake stopped; new messages wait in the queue"):
        # Polls in flight are abandoned undeleted: their messages come back after the visibility timeout.
        intake_stop.set()  # and the jobs gauge
        await asyncio.gather(*(t for t in (intake_task, gauge) if t is not None), return_exceptions=True)
    with drain.stage("worker", "worker drained; agents keep reporting through Temporal to any replica"):
        await asyncio.gather(*(w.shutdown() for w in workers))
        await asyncio.gather(*worker_tasks, return_exceptions=True)
    with drain.stage("gateway", "gateway stopped; agents reconnect to the next conductor by themselves"):
        await gateway.stop(grace=GATEWAY_GRACE_SECONDS)
    if rest is not None:
        with drain.stage("rest", "HTTP server stopped; pool agents move on to their next conductor URL"):
            await rest.stop()
            if model_upstream is not None:
                await model_upstream.aclose()
    agents = running_agents(settings.jobs_dir, build_launcher(settings), settings.host_task_queue)
    write_ready_file(settings.ready_path, drain.report(agents_still_running=agents))
    if tracing is not None:
        tracing.force_flush()  # the last spans, before the process exits
    log.info("conductor stopped; %d agents keep running; wrote %s", agents, settings.ready_path)
