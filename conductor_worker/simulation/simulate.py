"""`conductor simulate`: a scenario through the real workflows on Temporal's time-skipping test server.

The intake's own calls (`parse_message`, then `SqsIntake.start_ticket` / `deliver_alarm`) deliver each
message at its simulated time; the real TicketWorkflow, IncidentChainWorkflow and AgentJobWorkflow decide;
the real Router routes; only the launcher and publishers are the Recorder, which notes each launch.
The chain decisions come from each account workflow's `status` query (`conductor_worker/simulation/chain_log.py`).
"""

import asyncio
import functools
import logging
import tempfile
import time
import uuid
from pathlib import Path

import yaml
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.recorder import Recorder
from activities.routing import load_routes
from conductor_worker.config import Settings
from conductor_worker.process.devserver import register_search_attributes, test_server_executable
from conductor_worker.process.worker import build_recording_worker
from conductor_worker.simulation.report import SimulationReport
from conductor_worker.simulation.run import SimulationRun
from conductor_worker.simulation.scenario import Scenario, ScenarioError
from contracts.jobs import AgentStatus
from contracts.routing import AccountRouteRule, RepoRoute, RoutesConfig, TicketRouteRule

log = logging.getLogger(__name__)
WORKER_STOP_SECONDS = 30

# Without a routes file or inline routes, every ticket and account goes to one placeholder repository.
DEFAULT_ROUTE = RepoRoute(repo_url="sim://default", name="sim://default", publisher="local")
DEFAULT_ROUTES = RoutesConfig(
    tickets=[TicketRouteRule(route=DEFAULT_ROUTE)],
    accounts=[AccountRouteRule(account="*", route=DEFAULT_ROUTE)],
)


async def simulate(scenario: Scenario, routes_file: Path | None, settings: Settings) -> SimulationReport:
    began = time.monotonic()
    if routes_file is not None:
        try:
            load_routes(routes_file)
        except (yaml.YAMLError, ValueError) as err:
            raise ScenarioError(f"routes file {routes_file} is invalid: {err}") from err
    with tempfile.TemporaryDirectory(prefix="conductor-simulate-") as tmp:
        if routes_file is None:
            routes_file = Path(tmp) / ("routes-inline.yaml" if scenario.routes else "routes-default.yaml")
            routes_file.write_text(
                yaml.safe_dump((scenario.routes or DEFAULT_ROUTES).model_dump(mode="json"))
            )
        # A queue of its own, also named in IncidentChainInput.task_queue so incident jobs land on it.
        settings = settings.model_copy(
            update={
                "task_queue": f"simulate-{uuid.uuid4().hex[:8]}",
                "routes_file": routes_file,
                "state_dir": Path(tmp),
            }
        )
        failing = tuple(scenario.fail_jobs)
        recorder = Recorder(
            outcome=lambda job_id: (
                AgentStatus.FAILED if failing and job_id.startswith(failing) else AgentStatus.SUCCEEDED
            )
        )
        env = await WorkflowEnvironment.start_time_skipping(
            test_server_existing_path=test_server_executable(),
            data_converter=pydantic_data_converter,
            runtime=_quiet_runtime(),
        )
        try:
            await register_search_attributes(env.client)
            worker = build_recording_worker(env.client, settings, recorder)
            running = asyncio.create_task(worker.run())
            try:
                run = SimulationRun(env, settings, scenario)
                await run.deliver_all()
                notes = await run.settle()
                return await run.report(recorder.launches, notes, time.monotonic() - began)
            finally:
                await _stop(worker, running)
        finally:
            await env.shutdown()


async def _stop(worker: Worker, running: asyncio.Task) -> None:
    # Bounded: a worker that cannot evict a run (after a deadlocked workflow task) never ends its shutdown.
    try:
        async with asyncio.timeout(WORKER_STOP_SECONDS):
            await worker.shutdown()
            await running
    except TimeoutError:
        log.error("the simulation's worker did not stop within %d s; leaving it", WORKER_STOP_SECONDS)


@functools.cache
def _quiet_runtime() -> Runtime:
    # The test server lacks features the SDK core warns about on every start; keep the report readable.
    return Runtime(
        telemetry=TelemetryConfig(
            logging=LoggingConfig(filter=TelemetryFilter(core_level="ERROR", other_level="ERROR"))
        )
    )
