"""The chain rule's own cost (workflows/chaining.py `place_alarm`), against the least any rule must do.

10,000 ALARMs of one account, a third of a second apart (seven alarm names), placed one by one on the
account's chains: they make one chain. The raw baseline, same run, same alarms: what any placement has to
do, without the rule's models and its window test: remember the event id in a dict (dedup), keep the
earliest and latest event time and count. Each side runs `repeat` times, alternating, on fresh state;
the medians count (the machine is shared). The figure was a unit test's wall-clock bound (under 1 s for
the 10,000), which flaked under load; tests/unit/test_chaining.py keeps the correctness part.

The whole path (SQS, intake, workflows) is P3, benchmarks/alarm_bench.py.
"""

import argparse
import statistics
import time
from datetime import UTC, datetime, timedelta

from benchmarks.results import record
from contracts.alarms import AccountChains, Alarm, ChainPolicy
from workflows.chaining import place_alarm

ACCOUNT = "204772699175"
T0 = datetime(2026, 5, 12, 10, 0, tzinfo=UTC)
SPACING = timedelta(seconds=0.3)
TARGET_SECONDS = 1.0  # the unit test's old bound for 10,000 alarms


def storm(n: int) -> list[Alarm]:
    return [
        Alarm(account=ACCOUNT, alarm_name=f"alarm-{i % 7}", state="ALARM", event_time=T0 + SPACING * i)
        for i in range(n)
    ]


def rule(alarms: list[Alarm], policy: ChainPolicy) -> float:
    state = AccountChains(account=ACCOUNT)
    began = time.perf_counter()
    for alarm in alarms:
        place_alarm(state, alarm, policy)
    elapsed = time.perf_counter() - began
    assert [c.alarm_count for c in state.chains] == [len(alarms)], "the storm is one chain"
    return elapsed


def raw(alarms: list[Alarm]) -> float:
    seen: dict[str, datetime] = {}
    earliest = latest = None
    count = 0
    began = time.perf_counter()
    for alarm in alarms:
        event_id = alarm.event_id
        if event_id in seen:
            continue
        t = alarm.event_time
        seen[event_id] = t
        earliest = t if earliest is None else min(earliest, t)
        latest = t if latest is None else max(latest, t)
        count += 1
    elapsed = time.perf_counter() - began
    assert count == len(alarms) and earliest == alarms[0].event_time and latest == alarms[-1].event_time
    return elapsed


def main(n: int, repeat: int) -> None:
    alarms = storm(n)
    policy = ChainPolicy()
    rule_times, raw_times = [], []
    for _ in range(repeat):
        raw_times.append(raw(alarms))
        rule_times.append(rule(alarms, policy))
    r, b = statistics.median(rule_times), statistics.median(raw_times)
    print(
        f"chain rule, {n} alarms of one account into one chain: {r * 1000:7.1f} ms = {n / r:,.0f} alarms/s,"
        f" raw dedup + span {b * 1000:.1f} ms = {r / b:.1f} x raw (median of {repeat}; target < {TARGET_SECONDS:.0f} s)"
    )
    record(
        "chain rule (place_alarm)",
        f"{r * 1000:.0f} ms ({n} alarms, one chain; {n / r:,.0f} alarms/s)",
        f"{b * 1000:.1f} ms raw dedup + span of the same alarms",
        r / b,
        f"< {TARGET_SECONDS:.0f} s" if n == 10_000 else "",
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=10_000, help="alarms")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    main(args.n, args.repeat)
