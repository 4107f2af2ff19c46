"""`conductor simulate` on the example scenarios: exact jobs and chain membership, poison, JSON, speed.

Expected chains are computed here from the scenario files themselves (event times, ticket keys), never
from the simulator's own bookkeeping; each simulation starts its own time-skipping test server.
"""

import json
import time
from collections import defaultdict
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from conductor_worker.commands.cli import app
from conductor_worker.config import Settings
from conductor_worker.intake.messages import parse_message
from conductor_worker.intake.poison import PoisonMessage
from conductor_worker.simulation.report import SimulationReport
from conductor_worker.simulation.scenario import ScenarioError, load_scenario
from conductor_worker.simulation.simulate import simulate
from contracts.alarms import Alarm, AlarmState
from contracts.tickets import TicketMessage
from tests.helpers import EXAMPLES

SCENARIOS = EXAMPLES / "scenarios"
WINDOW = timedelta(hours=1)


async def run(path: Path) -> SimulationReport:
    return await simulate(load_scenario(path), None, Settings())


def parsed(path: Path) -> dict[int, TicketMessage | Alarm]:
    """Message number -> what the intake parses it to (poison left out)."""
    out = {}
    for message in load_scenario(path).messages:
        try:
            out[message.number] = parse_message(message.body)
        except PoisonMessage:
            pass
    return out


def chains_by_event_time(
    messages: dict[int, TicketMessage | Alarm],
) -> dict[str, list[tuple[set[str], list[int]]]]:
    """Per account: each chain's ALARM event ids and message numbers, by event time alone (gap > window)."""
    alarms = [(n, m) for n, m in messages.items() if isinstance(m, Alarm)]
    out: dict[str, list[tuple[set[str], list[int]]]] = {}
    for account in {m.account for _, m in alarms}:
        mine = [(n, m) for n, m in alarms if m.account == account]
        times = sorted({m.event_time for _, m in mine if m.state == AlarmState.ALARM})
        spans = [[times[0], times[0]]]
        for t in times[1:]:
            if t - spans[-1][1] > WINDOW:
                spans.append([t, t])
            spans[-1][1] = t
        out[account] = []
        for first, last in spans:
            inside = [(n, m) for n, m in mine if first - WINDOW <= m.event_time <= last + WINDOW]
            ids = {m.event_id for _, m in inside if m.state == AlarmState.ALARM}
            out[account].append((ids, sorted(n for n, _ in inside)))
    return out


def incident_chains(report: SimulationReport) -> dict[str, list[tuple[set[str], list[int]]]]:
    out: dict[str, list[tuple[set[str], list[int]]]] = defaultdict(list)
    for job in report.jobs:
        if job.kind == "incident":
            assert job.members_complete and job.outcome == "succeeded", job
            assert job.alarm_count == len(job.alarm_event_ids) == len(set(job.alarm_event_ids))
            out[job.account].append((set(job.alarm_event_ids), job.messages))
    return out


def same_chains(actual: list[tuple[set[str], list[int]]], expected: list[tuple[set[str], list[int]]]) -> bool:
    key = lambda chain: sorted(chain[0])  # noqa: E731
    return sorted(actual, key=key) == sorted(expected, key=key)


async def test_alarm_storm_makes_one_job_per_account_with_its_10_alarms() -> None:
    path = SCENARIOS / "alarm-storm.yaml"
    report = await run(path)
    chains = incident_chains(report)
    assert (report.totals.incident_jobs, report.totals.ticket_jobs, report.totals.chains) == (10, 0, 10)
    assert len(chains) == 10 and all(len(account_chains) == 1 for account_chains in chains.values())
    for account, expected in chains_by_event_time(parsed(path)).items():
        assert len(expected[0][0]) == 10
        assert same_chains(chains[account], expected), account
    assert report.rejected == [] and report.totals.launched == 10


@pytest.mark.slow  # 15-47 s on 2 cores: left out of `make test-fast`
async def test_ticket_burst_merges_each_keys_3_messages_into_its_one_job() -> None:
    path = SCENARIOS / "ticket-burst.yaml"
    report = await run(path)
    expected: dict[str, list[int]] = defaultdict(list)
    for n, ticket in parsed(path).items():
        expected[ticket.key].append(n)
    assert len(expected) == 200 and all(len(numbers) == 3 for numbers in expected.values())
    assert (report.totals.ticket_jobs, report.totals.incident_jobs, report.totals.launched) == (200, 0, 200)
    assert {job.subject: job.messages for job in report.jobs} == expected
    assert all(job.outcome == "succeeded" and job.repository == "sim://default" for job in report.jobs)

    # Each job is started by its key's first message (message #n is delivered at (n - 1) * 100 ms), so
    # none starts before it. How soon after is a latency, measured by `make bench` (P2), not asserted here:
    # under CI load a 1 s bound failed (1.015 s), and at load 10-16 a launch came 12 s after the burst's
    # last message (the test server's clock runs in real time between skips).
    for job in report.jobs:
        delivered = report.start + (job.messages[0] - 1) * timedelta(milliseconds=100)
        assert job.started_at >= delivered, job


def test_ticket_burst_jsonl_is_the_yaml_burst_as_jira_bodies() -> None:
    """The export-format twin: same tickets in the same order and at the same 100 ms steps."""
    as_yaml = load_scenario(SCENARIOS / "ticket-burst.yaml").messages
    as_jsonl = load_scenario(SCENARIOS / "ticket-burst.jsonl").messages
    assert [m.at for m in as_yaml] == [m.at for m in as_jsonl]
    assert [parse_message(m.body).key for m in as_yaml] == [parse_message(m.body).key for m in as_jsonl]
    assert {json.loads(m.body).get("webhookEvent") for m in as_jsonl} == {
        None,
        "jira:issue_created",
        "jira:issue_updated",
    }


async def test_backlog_after_outage_splits_into_the_chains_its_event_times_imply() -> None:
    path = SCENARIOS / "backlog-after-outage.jsonl"
    report = await run(path)
    expected = chains_by_event_time(parsed(path))
    assert {account: len(chains) for account, chains in expected.items()} == {
        "204772699175": 4,
        "111122223333": 3,
        "555566667777": 2,
    }
    chains = incident_chains(report)
    assert chains.keys() == expected.keys()
    for account in expected:
        assert same_chains(chains[account], expected[account]), account
    assert report.totals.incident_jobs == report.totals.chains == 9
    assert [r.number for r in report.rejected] == [18, 43]


async def test_poison_lines_are_reported_and_the_rest_still_runs(tmp_path: Path) -> None:
    ticket = (EXAMPLES / "tickets" / "ENG-123.json").read_text().replace("\n", " ")
    alarm = (EXAMPLES / "alarms" / "classic-sns-alarm.json").read_text().replace("\n", " ")
    path = tmp_path / "poison.jsonl"
    path.write_text("\n".join([ticket, "not json", '{"hello": "world"}', "[1, 2]", "", alarm]) + "\n")
    report = await run(path)
    assert [(r.number, bool(r.reason)) for r in report.rejected] == [(2, True), (3, True), (4, True)]
    assert {(job.kind, job.subject) for job in report.jobs} == {
        ("ticket", "ENG-123"),
        ("incident", "incident/204772699175/2026-05-12T20:00:00Z"),
    }
    assert report.jobs[1].messages == [6]  # numbers are line numbers: the blank line 5 is skipped


async def test_a_simulated_day_runs_in_seconds(tmp_path: Path) -> None:
    messages = [
        {"at": f"{hour}h{k * 10}m", "alarm": {"account": "204772699175", "name": f"alarm-{k}"}}
        for hour in range(0, 24, 4)
        for k in range(3)
    ]
    messages += [
        {"at": f"{i * 30}m", "alarm": {"account": "111122223333", "name": "cpu-high"}} for i in range(48)
    ]
    messages += [
        {"at": f"{hour}h{m}m", "ticket": {"key": f"OPS-{hour + 1}"}} for hour in range(24) for m in (5, 35)
    ]
    path = tmp_path / "day.yaml"
    path.write_text(yaml.safe_dump({"messages": messages}))
    began = time.monotonic()
    report = await run(path)
    elapsed = time.monotonic() - began
    print(f"a simulated day ({len(messages)} messages) took {elapsed:.1f} s of real time")
    assert report.settled_at - report.start >= timedelta(hours=23, minutes=35)
    chains = incident_chains(report)
    assert (len(chains["204772699175"]), len(chains["111122223333"])) == (6, 1)
    assert report.totals.ticket_jobs == 24
    assert elapsed < 60


@pytest.mark.slow  # 15-47 s on 2 cores: left out of `make test-fast`
def test_cli_prints_the_table_and_json() -> None:
    runner = CliRunner()
    table = runner.invoke(app, ["simulate", str(SCENARIOS / "alarm-storm.yaml")])
    assert table.exit_code == 0, table.output
    assert "Jobs: 10 (0 ticket, 10 incident; 10 launched); incident chains: 10" in table.stdout
    as_json = runner.invoke(app, ["simulate", str(SCENARIOS / "alarm-storm.yaml"), "--json"])
    assert as_json.exit_code == 0, as_json.output
    report = SimulationReport.model_validate_json(as_json.stdout)
    assert report.totals.incident_jobs == 10


def test_cli_names_the_bad_entry_of_a_bad_scenario(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("messages:\n  - {at: 0, ticket: {key: ENG-1}}\n  - {at: soon, ticket: {key: ENG-2}}\n")
    result = CliRunner().invoke(app, ["simulate", str(path)])
    assert result.exit_code == 2
    assert "messages[1] (message #2) at:" in result.stderr and "'soon'" in result.stderr


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("messages: []", "messages: List should have at least 1 item"),
        (
            "messages:\n- {at: 1m}",
            "messages[0] (message #1): needs exactly one of body, ticket, alarm (got none)",
        ),
        ("messages:\n- {at: 1m, alarm: {account: '1', name: x}}", "messages[0] (message #1) alarm.account:"),
        (
            "messages:\n- {at: 1m, alarm: {account: '204772699175', name: x, time: 2026-05-12T20:00:00}}",
            "timezone",
        ),
        ("messages:\n- {at: -5, body: {}}", "must not be negative"),
        ("messages: [", "not valid YAML/JSON"),
    ],
)
def test_scenario_errors_name_the_entry(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError, match="bad.yaml") as caught:
        load_scenario(path)
    assert problem in str(caught.value)


def test_offsets_and_shorthand_expand_into_real_message_bodies(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "start: 2026-05-12T10:00:00Z\nmessages:\n"
        "- {at: 1h30m, alarm: {account: '204772699175', name: cpu-high}}\n"
        "- {at: 90, ticket: {key: ENG-9, labels: [auth]}}\n"
    )
    scenario = load_scenario(path)
    assert [(m.number, m.at) for m in scenario.messages] == [
        (2, timedelta(seconds=90)),
        (1, timedelta(minutes=90)),
    ]
    ticket, alarm = (parse_message(m.body) for m in scenario.messages)
    assert (ticket.key, ticket.project, ticket.labels) == ("ENG-9", "ENG", ["auth"])
    assert alarm.event_time.isoformat() == "2026-05-12T11:30:00+00:00" and alarm.state == AlarmState.ALARM
