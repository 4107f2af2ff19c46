"""Regenerate the example scenarios (deterministic: a fixed seed per file).

    .venv/bin/python examples/scenarios/generate.py

- alarm-storm.yaml: 100 ALARMs within one hour across 10 accounts, 10 per account (YAML `alarm:` shorthand).
- ticket-burst.yaml / ticket-burst.jsonl: 10 tickets a second for 60 s, 200 keys each sent 3 times, shuffled.
  The YAML spells the 100 ms spacing out with `at`; the JSONL gets it from the format (one line per 100 ms)
  and holds the bodies as Jira sends them: the issue, then `issue_created` / `issue_updated` webhooks.
- backlog-after-outage.jsonl: 6 hours of alarms of 3 accounts, drained in shuffled order, with SQS
  redeliveries, OK transitions and two poison messages. Each burst spans less than the 1 h chain window
  and bursts are more than 1 h apart, so the chains their event times imply do not depend on the order.
"""

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from conductor_worker.simulation.scenario import AlarmShorthand, TicketShorthand

HERE = Path(__file__).resolve().parent
DAY = datetime(2026, 5, 12, tzinfo=UTC)
ALARM_NAMES = ["cpu-high", "api-5xx", "db-latency", "queue-depth", "disk-full"]

# Backlog: per account, bursts as (first, last) event times on DAY. Spans < 1 h, gaps > 1 h.
BACKLOG_BURSTS = {
    "204772699175": [("08:05", "08:50"), ("10:10", "10:55"), ("12:20", "12:40"), ("13:45", "14:00")],
    "111122223333": [("08:30", "09:20"), ("11:00", "11:50"), ("13:10", "13:55")],
    "555566667777": [("09:00", "09:45"), ("12:00", "12:30")],
}


def alarm_storm() -> None:
    rng = random.Random(1)
    accounts = sorted({str(rng.randrange(10**11, 10**12)) for _ in range(10)})
    entries = []
    for account in accounts:
        # Distinct seconds, so no two alarms of an account are the same event.
        for second in rng.sample(range(3600), 10):
            entries.append((second, account, rng.choice(ALARM_NAMES[:4])))
    entries.sort()
    messages = [{"at": _offset(s), "alarm": {"account": a, "name": n}} for s, a, n in entries]
    _write_yaml("alarm-storm.yaml", "100 ALARMs within one hour across 10 accounts (10 each).", messages)


def ticket_burst() -> None:
    rng = random.Random(2)
    sends = [(key, copy) for key in range(1001, 1201) for copy in range(3)]
    rng.shuffle(sends)
    # The first message of a key is the one numbered lowest, whatever copy it is.
    messages = [
        {"at": f"{i / 10:.1f}s", "ticket": {"key": f"ENG-{key}", "summary": f"Burst ticket {key}"}}
        for i, (key, _) in enumerate(sends)
    ]
    _write_yaml("ticket-burst.yaml", "10 tickets a second for 60 s: 200 keys, each sent 3 times.", messages)
    lines = []
    for key, copy in sends:
        issue = TicketShorthand(key=f"ENG-{key}", summary=f"Burst ticket {key}").body()
        event = ["jira:issue_created", "jira:issue_updated"]
        lines.append(issue if copy == 0 else {"webhookEvent": event[copy - 1], "issue": issue})
    _write_jsonl("ticket-burst.jsonl", lines)


def backlog_after_outage() -> None:
    rng = random.Random(3)
    events = []  # (account, name, state, time)
    for account, bursts in BACKLOG_BURSTS.items():
        for first, last in bursts:
            start, end = _at(first), _at(last)
            seconds = int((end - start).total_seconds())
            times = [start, end] + [
                start + timedelta(seconds=s) for s in rng.sample(range(1, seconds), rng.randint(2, 6))
            ]
            events += [(account, rng.choice(ALARM_NAMES), "ALARM", t) for t in sorted(times)]
    bodies = [_eventbridge(*event) for event in events]
    # SQS delivers at least once: a few redeliveries, some in another shape (one event id either way).
    for event in rng.sample(events, 5):
        bodies.append(rng.choice([_eventbridge, _classic_sns, _sns_envelope])(*event))
    rng.shuffle(bodies)
    # An alarm's OK, recorded on its burst's chain: placed after one of the burst's ALARMs so it lands there.
    for account, name, _, t in rng.sample(events, 4):
        after = next(i for i, body in enumerate(bodies) if _is_alarm_of(body, account, name, t))
        bodies.insert(
            rng.randint(after + 1, len(bodies)), _eventbridge(account, name, "OK", t + timedelta(minutes=3))
        )
    lines: list = list(bodies)
    lines.insert(17, '{"version":"0","id":"cut-short","detail-type":"CloudWatch Alarm State Ch')
    lines.insert(
        42,
        {
            "version": "0",
            "source": "aws.cloudwatch",
            "detail-type": "CloudWatch Alarm Configuration Change",
            "account": "204772699175",
            "time": "2026-05-12T09:00:00Z",
            "detail": {"alarmName": "cpu-high"},
        },
    )
    _write_jsonl("backlog-after-outage.jsonl", lines)


def _eventbridge(account: str, name: str, state: str, at: datetime) -> dict:
    return AlarmShorthand(account=account, name=name, state=state, time=at, region="eu-west-1").body(at)


def _classic_sns(account: str, name: str, state: str, at: datetime) -> dict:
    return {
        "AlarmName": name,
        "AWSAccountId": account,
        "NewStateValue": state,
        "NewStateReason": f"simulated {state}",
        "StateChangeTime": at.strftime("%Y-%m-%dT%H:%M:%S.000+0000"),
        "Region": "EU (Ireland)",
        "AlarmArn": f"arn:aws:cloudwatch:eu-west-1:{account}:alarm:{name}",
        "OldStateValue": "OK",
    }


def _sns_envelope(account: str, name: str, state: str, at: datetime) -> dict:
    inner = _eventbridge(account, name, state, at)
    return {"Type": "Notification", "MessageId": f"sns-{inner['id']}", "Message": json.dumps(inner)}


def _is_alarm_of(body: dict, account: str, name: str, at: datetime) -> bool:
    return body == _eventbridge(account, name, "ALARM", at)


def _at(clock: str) -> datetime:
    hours, minutes = clock.split(":")
    return DAY + timedelta(hours=int(hours), minutes=int(minutes))


def _offset(seconds: int) -> str:
    return f"{seconds // 60}m{seconds % 60}s"


def _write_yaml(name: str, what: str, messages: list[dict]) -> None:
    header = f"# {what}\n# Generated by generate.py; edit that, not this file.\n"
    doc = {"start": "2026-05-12T20:00:00Z", "messages": messages}
    (HERE / name).write_text(
        header + yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=200)
    )


def _write_jsonl(name: str, lines: list) -> None:
    text = "".join(
        (line if isinstance(line, str) else json.dumps(line, separators=(",", ":"))) + "\n" for line in lines
    )
    (HERE / name).write_text(text)


if __name__ == "__main__":
    alarm_storm()
    ticket_burst()
    backlog_after_outage()
