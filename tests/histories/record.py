"""`make histories`: record workflow histories from real runs into tests/histories/<type>/<scenario>.json.

Everything is real: a fresh Temporal dev server on free ports, the conductor in this process (worker,
gateway, local launcher), `conductor-agent` subprocesses and a bare git remote made from
examples/sample-repo. Keys, accounts and alarm times are fixed, so a re-recording differs only in
timestamps, run ids and how the server batched workflow tasks. tests/replay replays every file.

    python -m tests.histories.record              # all scenarios, into tests/histories/
    python -m tests.histories.record --out DIR
    python -m tests.histories.record --only script_tasks_on_a_pool_agent
"""

import argparse
import asyncio
import json
import logging
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from temporalio.client import Client, WorkflowFailureError

from activities.routing import load_routes
from conductor_worker.commands.schedules import create_schedule, find_route
from conductor_worker.config import Settings
from conductor_worker.intake.messages import parse_message
from conductor_worker.intake.sqs import SqsIntake
from conductor_worker.pool_api.run_script import run_script
from conductor_worker.process.app import run_conductor
from conductor_worker.process.client import connect
from conductor_worker.process.devserver import DevServer
from contracts.alarms import Alarm, AlarmBatch, AlarmState
from contracts.claims import claim_workflow_id
from contracts.ids import account_workflow_id, ticket_job_id, ticket_workflow_id
from contracts.incidents import IncidentChainInput
from contracts.jobs import JobState
from contracts.operator import CancelRequest, RetryRequest, SteerRequest
from contracts.policies import JobPolicy
from contracts.pool import pool_workflow_id, script_workflow_id
from contracts.schedules import ScheduledJob, schedule_id
from contracts.tickets import TicketMessage
from tests.git_helpers import make_bare_repo_from
from tests.github_standin import GithubStandin
from tests.helpers import EXAMPLES, free_port, ticket_body, wait_for
from tests.jira_standin import JiraStandin
from tests.pool_helpers import JOIN_TOKEN, pool_agent, stop_agent
from workflows.agent_job import AgentJobWorkflow
from workflows.chaining import chain_id_for
from workflows.incident_chain import ALARMS_PER_RUN, PLACE_PER_TURN, IncidentChainWorkflow

HISTORIES = Path(__file__).resolve().parent
T0 = datetime(2026, 5, 12, 20, 0, tzinfo=UTC)
CHAIN_ACCOUNT = "204772699175"
STORM_ACCOUNT = "111122223333"
SLICED_ACCOUNT = "555566667777"
BROKEN_REMOTE_ACCOUNT = "999999999999"  # routed to a remote that does not exist: its agent fails
# Where status comments (Jira tickets) and incident reports (the broken account's GitHub repo) go.
JIRA_ISSUES = ["ENG-123", "ENG-124", "ENG-125", "OPS-7"]
REPORTS_REPO = "acme/ops"
STORM_ALARMS = ALARMS_PER_RUN + 100  # so the chain workflow continues as new once
SCENARIO_TIMEOUT = 180


class Recording:
    """Collects (workflow type, scenario, workflow id) and writes each run's history at the end."""

    def __init__(self, client: Client, intake: SqsIntake, settings: Settings, remote: Path) -> None:
        self.client = client
        self.intake = intake
        self.settings = settings
        # The bare repository tickets are routed to; its claim workflow is recorded too.
        self.remote = str(remote)
        self.wanted: list[tuple[str, str, str, str | None]] = []

    def add(self, workflow_type: str, scenario: str, workflow_id: str, run_id: str | None = None) -> None:
        """Record this run (the latest one when `run_id` is None) once every scenario has ended."""
        self.wanted.append((workflow_type, scenario, workflow_id, run_id))

    async def write(self, out: Path) -> list[tuple[Path, int]]:
        written = []
        for workflow_type, scenario, workflow_id, run_id in self.wanted:
            history = await self.client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
            path = out / workflow_type / f"{scenario}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            # to_json() leaves out the workflow id; keep it (WorkflowHistory.from_json ignores the extra key).
            doc = {"workflowId": workflow_id, **history.to_json_dict()}
            path.write_text(json.dumps(doc, indent=1) + "\n")
            written.append((path, len(history.events)))
        return written


# Scenarios -------------------------------------------------------------------------------------


async def ticket_succeeds(rec: Recording) -> None:
    """ENG-123 end to end: route, agent subprocess, branch pushed to the bare remote."""
    ticket = _ticket("ENG-123")
    await rec.intake.start_ticket(ticket)
    await rec.client.get_workflow_handle(ticket_workflow_id("jira", ticket.key)).result()
    rec.add("TicketWorkflow", "succeeds", ticket_workflow_id("jira", ticket.key))
    rec.add("AgentJobWorkflow", "ticket_succeeds", ticket_job_id("jira", ticket.key))


async def ticket_without_route(rec: Recording) -> None:
    ticket = _ticket("OPS-7", project={"key": "OPS"}, components=[], labels=["billing"])
    await rec.intake.start_ticket(ticket)
    await _expect_failure(rec.client, ticket_workflow_id("jira", ticket.key))
    rec.add("TicketWorkflow", "no_route", ticket_workflow_id("jira", ticket.key))


async def incident_chain(rec: Recording) -> None:
    """A chain whose job succeeds; later ALARMs, an OK and a duplicate arrive while the job runs.

    The later ALARMs are forwarded 5 s after they arrive; the demo agent is usually done by then, so the
    chain's history usually shows a failed external signal (which it logs and moves past).
    """
    job_id = chain_id_for(CHAIN_ACCOUNT, T0)
    await rec.intake.deliver_alarm(_alarm(CHAIN_ACCOUNT, 0, "cpu-high"))
    await wait_for(lambda: _exists(rec.client, job_id), timeout=30)
    for alarm in (
        _alarm(CHAIN_ACCOUNT, 2, "api-5xx"),
        _alarm(CHAIN_ACCOUNT, 3, "cpu-high", AlarmState.OK),
        _alarm(CHAIN_ACCOUNT, 0, "cpu-high"),  # the first one again: a duplicate
        _alarm(CHAIN_ACCOUNT, 4, "db-latency"),
    ):
        await rec.intake.deliver_alarm(alarm)
    await rec.client.get_workflow_handle(job_id).result()
    # The chain ends once idle past max_age + window (15 s here), after its job reported back.
    await rec.client.get_workflow_handle(account_workflow_id(CHAIN_ACCOUNT)).result()
    rec.add("IncidentChainWorkflow", "chain_job_succeeds", account_workflow_id(CHAIN_ACCOUNT))
    rec.add("AgentJobWorkflow", "incident_succeeds", job_id)


async def incident_agent_fails(rec: Recording) -> None:
    """An account routed to a remote that does not exist: the agent fails, the job reports FAILED."""
    job_id = chain_id_for(BROKEN_REMOTE_ACCOUNT, T0)
    await rec.intake.deliver_alarm(_alarm(BROKEN_REMOTE_ACCOUNT, 0, "disk-full"))
    await wait_for(lambda: _exists(rec.client, job_id), timeout=30)
    await _expect_failure(rec.client, job_id)
    await rec.client.get_workflow_handle(account_workflow_id(BROKEN_REMOTE_ACCOUNT)).result()
    rec.add("IncidentChainWorkflow", "chain_job_fails", account_workflow_id(BROKEN_REMOTE_ACCOUNT))
    rec.add("AgentJobWorkflow", "incident_agent_fails", job_id)


async def alarm_storm(rec: Recording) -> None:
    """1,100 ALARMs, one signal each as the intake sends them: the first run continues as new."""
    gate = asyncio.Semaphore(50)  # concurrent like the intake's pollers: fewer, larger workflow tasks

    async def deliver(i: int) -> None:
        # Bare alarms (no reason, region or ARN): 1,100 signal payloads are most of this history's size.
        alarm = Alarm(
            account=STORM_ACCOUNT,
            alarm_name=f"alarm-{i % 7}",
            state=AlarmState.ALARM,
            event_time=T0 + timedelta(milliseconds=4 * i),
        )
        async with gate:
            await rec.intake.deliver_alarm(alarm)

    # The earliest alarm starts the workflow, so it is in the first batch placed and the chain (and its
    # job's id) opens at T0 on every recording.
    await deliver(0)
    await asyncio.gather(*(deliver(i) for i in range(1, STORM_ALARMS)))
    workflow_id = account_workflow_id(STORM_ACCOUNT)
    await rec.client.get_workflow_handle(workflow_id).result()  # follows the runs to the last one
    last = await rec.client.get_workflow_handle(workflow_id).fetch_history()
    first_run = last.events[0].workflow_execution_started_event_attributes.continued_execution_run_id
    if not first_run:
        raise AssertionError(f"{workflow_id} did not continue as new")
    rec.add("IncidentChainWorkflow", "storm_continues_as_new", workflow_id, run_id=first_run)
    rec.add("IncidentChainWorkflow", "storm_after_continue_as_new", workflow_id)
    rec.add("AgentJobWorkflow", "storm_job", chain_id_for(STORM_ACCOUNT, T0))


async def alarm_batch_placed_in_slices(rec: Recording) -> None:
    """One signal of more alarms than a workflow task places: they are placed over several tasks."""
    alarms = [_alarm(SLICED_ACCOUNT, 0.004 * i, f"alarm-{i % 7}") for i in range(PLACE_PER_TURN + 200)]
    workflow_id = account_workflow_id(SLICED_ACCOUNT)
    handle = await rec.client.start_workflow(
        IncidentChainWorkflow.run,
        IncidentChainInput(
            account=SLICED_ACCOUNT, policy=rec.settings.chain_policy(), task_queue=rec.settings.task_queue
        ),
        id=workflow_id,
        task_queue=rec.settings.task_queue,
        start_signal="alarms",
        start_signal_args=[AlarmBatch(alarms=alarms)],
    )
    await handle.result()
    rec.add("IncidentChainWorkflow", "batch_placed_in_slices", workflow_id)


async def script_tasks_on_a_pool_agent(rec: Recording) -> None:
    """Two scripts through the REST API and a real `conductor-agent pool`: one beats and completes, one fails."""
    queue = rec.settings.task_queue
    with tempfile.TemporaryDirectory(prefix="pool-agent-") as tmp:
        agent = pool_agent([f"http://{rec.settings.rest_listen}"], "history-node", Path(tmp) / "agent.log")
        try:
            # Longer than one beat interval, so the history holds a `running` report.
            await run_script(rec.client, "sleep 6; echo recorded", task_id="completes", task_queue=queue)
            await run_script(rec.client, "echo oops >&2; exit 3", task_id="fails", task_queue=queue)
        finally:
            await asyncio.to_thread(stop_agent, agent)  # this loop serves the agent's last calls
    rec.add("ScriptTaskWorkflow", "completes_after_a_beat", script_workflow_id("completes"))
    rec.add("ScriptTaskWorkflow", "script_fails", script_workflow_id("fails"))
    rec.add("AgentPoolWorkflow", "serves_two_tasks", pool_workflow_id(queue))


async def operator_cancels_steers_retries(rec: Recording) -> None:
    """ENG-124 waits for the repository ENG-123 holds, is steered and cancelled by an operator, then retried."""
    ticket = _ticket("ENG-124")
    job = rec.client.get_workflow_handle(ticket_job_id("jira", ticket.key))
    await rec.intake.start_ticket(ticket)
    await wait_for(lambda: _exists(rec.client, job.id), timeout=30)
    await job.execute_update(
        AgentJobWorkflow.steer, SteerRequest(text="Keep the greeting short.", by="recorder")
    )
    await job.signal(AgentJobWorkflow.cancel, CancelRequest(by="recorder", reason="recording a cancel"))
    await wait_for(lambda: _in_state(job, JobState.CANCELLED), timeout=60)
    await job.signal(AgentJobWorkflow.retry, RetryRequest(by="recorder"))
    await rec.client.get_workflow_handle(ticket_workflow_id("jira", ticket.key)).result()
    rec.add("AgentJobWorkflow", "cancelled_steered_retried", job.id)
    rec.add("RepoClaimWorkflow", "greeter_claims", claim_workflow_id(rec.remote))


async def running_job_steered(rec: Recording) -> None:
    """ENG-125 is steered while its demo agent runs. The demo agent makes no model request, so no
    `steering_delivered` signal comes and the update answers at once (the wait is 0 without a model gateway)."""
    ticket = _ticket("ENG-125")
    job = rec.client.get_workflow_handle(ticket_job_id("jira", ticket.key))
    await rec.intake.start_ticket(ticket)
    await wait_for(lambda: _exists(rec.client, job.id), timeout=30)
    await wait_for(lambda: _in_state(job, JobState.RUNNING), timeout=60, interval=0.02)
    ack = await job.execute_update(
        AgentJobWorkflow.steer, SteerRequest(text="Mention the steering.", by="recorder")
    )
    if not ack.delivered_to_running_agent:
        raise AssertionError("ENG-125's agent finished before the steer: record again")
    await rec.client.get_workflow_handle(ticket_workflow_id("jira", ticket.key)).result()
    rec.add("AgentJobWorkflow", "running_job_steered", job.id)


async def scheduled_job_triggered(rec: Recording) -> None:
    """A schedule triggered once: its run starts an ordinary agent job that publishes its own branch."""
    routes = load_routes(rec.settings.routes_file)
    route = find_route(routes, "greeter")
    job = ScheduledJob(
        name="weekly-deps",
        summary="Weekly dependency updates",
        prompt="Bump the dependencies that have a newer patch release.",
        route=route,
        policy=route.policy_for(rec.settings.scheduled_policy),
    )
    await create_schedule(rec.client, rec.settings, job, "0 6 * * MON", "UTC", paused=True)
    schedule = rec.client.get_schedule_handle(schedule_id(job.name))
    await schedule.trigger()

    async def started_run() -> list[str]:
        query = f"WorkflowType = 'ScheduledJobWorkflow' AND WorkflowId STARTS_WITH '{schedule_id(job.name)}-'"
        return [wf.id async for wf in rec.client.list_workflows(query)]

    (run_id,) = await wait_for(started_run, timeout=60)
    await rec.client.get_workflow_handle(run_id).result()
    await schedule.delete()
    rec.add("ScheduledJobWorkflow", "triggered_run_succeeds", run_id)


SCENARIOS = [
    ticket_succeeds,
    operator_cancels_steers_retries,
    running_job_steered,
    scheduled_job_triggered,
    ticket_without_route,
    incident_chain,
    incident_agent_fails,
    alarm_storm,
    alarm_batch_placed_in_slices,
    script_tasks_on_a_pool_agent,
]


# Helpers ---------------------------------------------------------------------------------------


def _ticket(key: str, **fields) -> TicketMessage:
    return parse_message(ticket_body(key, **fields))


def _alarm(account: str, seconds: float, name: str, state: AlarmState = AlarmState.ALARM) -> Alarm:
    return Alarm(
        account=account,
        region="us-east-1",
        alarm_name=name,
        state=state,
        reason=f"Threshold crossed: {name}",
        event_time=T0 + timedelta(seconds=seconds),
    )


async def _exists(client: Client, workflow_id: str) -> bool:
    try:
        await client.get_workflow_handle(workflow_id).describe()
        return True
    except Exception:
        return False


async def _in_state(job, state: JobState) -> bool:
    return (await job.query(AgentJobWorkflow.status)).state == state


async def _expect_failure(client: Client, workflow_id: str) -> None:
    try:
        await client.get_workflow_handle(workflow_id).result()
    except WorkflowFailureError:
        return
    raise AssertionError(f"{workflow_id} was expected to fail")


# The run ---------------------------------------------------------------------------------------


async def record(out: Path, scenarios: list) -> None:
    with (
        tempfile.TemporaryDirectory(prefix="histories-") as tmp_dir,
        JiraStandin(email="recorder@acme.test", token="jira", issues=JIRA_ISSUES) as jira,
        GithubStandin(token="gh", repos=[REPORTS_REPO]) as github,
    ):
        tmp = Path(tmp_dir)
        remote = make_bare_repo_from(EXAMPLES / "sample-repo", tmp / "remotes" / "greeter.git")
        routes = tmp / "routes.yaml"
        routes.write_text(
            f"tickets:\n  - project: ENG\n    route: {{repo_url: {remote}, publisher: local, name: greeter}}\n"
            f'accounts:\n  - account: "{BROKEN_REMOTE_ACCOUNT}"\n'
            f"    route: {{repo_url: {tmp / 'remotes' / 'missing.git'}, publisher: github, name: missing,"
            f" github_repo: {REPORTS_REPO}}}\n"
            f'  - account: "*"\n    route: {{repo_url: {remote}, publisher: local, name: greeter}}\n'
        )
        server = DevServer(tmp / "temporal", port=free_port(), ui_port=free_port())
        server.start()
        settings = Settings(
            temporal_address=server.address,
            task_queue="histories",
            state_dir=tmp / "conductor",
            gateway_listen="127.0.0.1:0",
            routes_file=routes,
            heartbeat_interval_seconds=1,
            # Short chain windows so the chain workflows end (idle past max_age + window) within seconds.
            chain_window_seconds=5,
            chain_max_age_seconds=10,
            rest_listen=f"127.0.0.1:{free_port()}",
            # Failed incident jobs close at once; failed tickets wait for `retry` (the operator scenario).
            ticket_policy=JobPolicy(retry_window_seconds=600),
            incident_policy=JobPolicy(retry_window_seconds=0),
            pool_join_token=JOIN_TOKEN,
            # Jira tickets keep a status comment; the broken account's chain a report issue.
            jira_base_url=jira.base_url,
            jira_email="recorder@acme.test",
            jira_api_token="jira",
            github_api_url=github.base_url,
            github_token="gh",
        )
        stop = asyncio.Event()
        conductor = None
        try:
            client = await connect(settings)
            conductor = asyncio.create_task(run_conductor(settings, stop))
            # No SQS: scenarios call the intake directly.
            rec = Recording(client, SqsIntake(client, settings, None), settings, remote)
            await asyncio.gather(*(_timed(scenario(rec), scenario.__name__) for scenario in scenarios))
            for path, events in await rec.write(out):
                print(f"  {path.relative_to(out)}: {events} events")
        finally:
            stop.set()
            if conductor is not None:
                await asyncio.wait_for(conductor, timeout=60)
            server.stop()


async def _timed(scenario, name: str) -> None:
    started = time.monotonic()
    await asyncio.wait_for(scenario, timeout=SCENARIO_TIMEOUT)
    print(f"{name}: {time.monotonic() - started:.1f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--out", type=Path, default=HISTORIES, help="where the <type>/<scenario>.json go")
    names = [scenario.__name__ for scenario in SCENARIOS]
    parser.add_argument("--only", nargs="+", choices=names, default=names, help="record these scenarios only")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    # Two scenarios fail on purpose (no route, a missing remote); their activity tracebacks are noise here.
    logging.getLogger("temporalio.activity").setLevel(logging.ERROR)
    started = time.monotonic()
    asyncio.run(record(args.out, [scenario for scenario in SCENARIOS if scenario.__name__ in args.only]))
    print(f"recorded in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
