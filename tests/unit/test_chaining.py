"""The chain rule (workflows/chaining.py), by event time, on fixed datetimes."""

import itertools
from datetime import UTC, datetime, timedelta, timezone

import pytest

from conductor_worker.intake.messages import parse_message
from contracts.alarms import AccountChains, Alarm, Chain, ChainPolicy, PlacementKind
from tests.helpers import EXAMPLES
from workflows.chaining import chain_id_for, find_chain, place_alarm, prune, wants_job

A = "204772699175"
B = "111122223333"
T0 = datetime(2026, 5, 12, 10, 0, tzinfo=UTC)
POLICY = ChainPolicy()  # window 1 h, max age 24 h
OPENED, JOINED, RECORDED, DUPLICATE = (
    PlacementKind.OPENED,
    PlacementKind.JOINED,
    PlacementKind.RECORDED,
    PlacementKind.DUPLICATE,
)


def at(hours: float = 0, minutes: float = 0, seconds: float = 0) -> datetime:
    return T0 + timedelta(hours=hours, minutes=minutes, seconds=seconds)


def alarm(event_time: datetime, name: str = "cpu-high", state: str = "ALARM", account: str = A) -> Alarm:
    return Alarm(account=account, alarm_name=name, state=state, event_time=event_time)


def feed(state: AccountChains, *alarms: Alarm, policy: ChainPolicy = POLICY) -> list[PlacementKind]:
    return [place_alarm(state, a, policy).kind for a in alarms]


def spans(state: AccountChains) -> list[tuple[datetime, datetime, int]]:
    return [(c.earliest_at, c.latest_at, c.alarm_count) for c in state.chains]


def test_chain_id_is_the_account_and_the_utc_time_of_the_first_alarm():
    plus_two = datetime(2026, 5, 12, 22, 0, 0, 400_000, tzinfo=timezone(timedelta(hours=2)))
    assert chain_id_for(A, plus_two) == "incident/204772699175/2026-05-12T20:00:00Z"


def test_a_gap_exactly_equal_to_the_window_joins():
    state = AccountChains(account=A)
    assert feed(state, alarm(at(0)), alarm(at(1))) == [OPENED, JOINED]
    assert spans(state) == [(at(0), at(1), 2)]
    assert state.chains[0].chain_id == "incident/204772699175/2026-05-12T10:00:00Z"


def test_one_second_over_the_window_opens_a_new_chain():
    state = AccountChains(account=A)
    assert feed(state, alarm(at(0)), alarm(at(1, seconds=1))) == [OPENED, OPENED]
    assert [c.chain_id for c in state.chains] == [
        "incident/204772699175/2026-05-12T10:00:00Z",
        "incident/204772699175/2026-05-12T11:00:01Z",
    ]


def test_the_window_slides_with_the_chain():
    state = AccountChains(account=A)
    assert feed(state, *(alarm(at(minutes=50 * k)) for k in range(5))) == [OPENED] + [JOINED] * 4
    assert spans(state) == [(at(0), at(minutes=200), 5)]


def test_out_of_order_arrival_within_the_window_is_one_chain():
    state = AccountChains(account=A)
    assert feed(state, alarm(at(0, 30)), alarm(at(0)), alarm(at(1, 20))) == [OPENED, JOINED, JOINED]
    assert spans(state) == [(at(0), at(1, 20), 3)]
    (chain,) = state.chains
    assert chain.opened_at == at(0, 30)
    assert chain.chain_id == "incident/204772699175/2026-05-12T10:30:00Z"  # the id never moves


def test_a_late_alarm_hours_before_a_chain_opens_its_own_chain():
    state = AccountChains(account=A)
    feed(state, alarm(at(0, 30)), alarm(at(0)), alarm(at(1, 20)))
    placement = place_alarm(state, alarm(at(-3)), POLICY)
    assert (placement.kind, placement.chain_id) == (OPENED, "incident/204772699175/2026-05-12T07:00:00Z")
    assert spans(state) == [(at(0), at(1, 20), 3), (at(-3), at(-3), 1)]


def test_a_late_alarm_between_two_chains_joins_the_latest_and_never_merges_them():
    state = AccountChains(account=A)
    feed(state, alarm(at(0)), alarm(at(-2)))  # two chains, 2 h apart
    placement = place_alarm(state, alarm(at(-1), name="disk-full"), POLICY)  # within 1 h of both
    assert (placement.kind, placement.chain_id) == (JOINED, "incident/204772699175/2026-05-12T10:00:00Z")
    assert spans(state) == [(at(-1), at(0), 2), (at(-2), at(-2), 1)]


def test_a_backlog_splits_by_event_time_whatever_the_arrival_order():
    """A queue drained after an outage delivers everything at once, in any order: event times decide."""
    backlog = [alarm(at(0)), alarm(at(0, 40)), alarm(at(0, 50)), alarm(at(5)), alarm(at(5, 20))]
    for order in itertools.permutations(backlog):
        state = AccountChains(account=A)
        feed(state, *order)
        assert sorted(spans(state)) == [(at(0), at(0, 50), 3), (at(5), at(5, 20), 2)]


def test_a_bridging_alarm_that_arrives_last_does_not_merge_the_chains_it_bridges():
    """10:00 and 11:30 are two chains by the time 10:40 arrives; in event-time order they would be one."""
    in_order, late_bridge = AccountChains(account=A), AccountChains(account=A)
    feed(in_order, alarm(at(0)), alarm(at(0, 40)), alarm(at(1, 30)))
    feed(late_bridge, alarm(at(0)), alarm(at(1, 30)), alarm(at(0, 40)))
    assert spans(in_order) == [(at(0), at(1, 30), 3)]
    assert spans(late_bridge) == [(at(0), at(0), 1), (at(0, 40), at(1, 30), 2)]


def test_accounts_interleaved_keep_their_own_chains():
    chains = {A: AccountChains(account=A), B: AccountChains(account=B)}
    arrivals = [(A, at(0)), (B, at(0, 10)), (A, at(0, 50)), (B, at(2)), (A, at(1, 40)), (B, at(2, 30))]
    kinds = [place_alarm(chains[acct], alarm(t, account=acct), POLICY).kind for acct, t in arrivals]
    assert kinds == [OPENED, OPENED, JOINED, OPENED, JOINED, JOINED]
    assert spans(chains[A]) == [(at(0), at(1, 40), 3)]
    assert spans(chains[B]) == [(at(0, 10), at(0, 10), 1), (at(2), at(2, 30), 2)]
    assert (chains[A].alarms_total, chains[B].alarms_total) == (3, 3)
    with pytest.raises(ValueError, match="account"):
        place_alarm(chains[A], alarm(at(0), account=B), POLICY)


def test_maximum_age_closes_a_chain():
    """Every 50 min for 25 h: 1400 min fits in 24 h (1440), 1450 min does not, so alarm 29 opens chain 2."""
    state = AccountChains(account=A)
    kinds = feed(state, *(alarm(at(minutes=50 * k)) for k in range(31)))
    assert kinds == [OPENED] + [JOINED] * 28 + [OPENED, JOINED]
    assert spans(state) == [(at(0), at(minutes=1400), 29), (at(minutes=1450), at(minutes=1500), 2)]
    assert state.chains[1].chain_id == "incident/204772699175/2026-05-13T10:10:00Z"


def test_a_span_exactly_equal_to_the_maximum_age_still_joins():
    state = AccountChains(account=A)
    kinds = feed(state, *(alarm(at(k)) for k in range(26)))
    assert kinds == [OPENED] + [JOINED] * 24 + [OPENED]
    assert spans(state) == [(at(0), at(24), 25), (at(25), at(25), 1)]


def test_a_chain_full_at_maximum_age_and_its_successor_in_the_same_second_get_distinct_ids():
    policy = ChainPolicy(window=timedelta(hours=1), max_age=timedelta(hours=1))
    state = AccountChains(account=A)
    late, after = at(-1, seconds=0.5), at(seconds=0.7)
    assert feed(state, alarm(at(0)), alarm(late), alarm(after), policy=policy) == [OPENED, JOINED, OPENED]
    assert [c.chain_id for c in state.chains] == [
        "incident/204772699175/2026-05-12T10:00:00Z",
        "incident/204772699175/2026-05-12T10:00:00Z-2",
    ]


def test_ok_and_insufficient_data_never_open_chains_and_are_counted_on_the_covering_chain():
    state = AccountChains(account=A)
    first = place_alarm(state, alarm(at(-3), state="OK"), POLICY)
    assert (first.kind, first.chain_id, state.chains) == (RECORDED, None, [])
    feed(state, alarm(at(0)))
    covered = place_alarm(state, alarm(at(0, 59), state="OK"), POLICY)
    assert (covered.kind, covered.chain_id) == (RECORDED, state.chains[0].chain_id)
    assert feed(state, alarm(at(5), state="INSUFFICIENT_DATA")) == [RECORDED]
    # An OK does not slide the window: 1 h 30 min after the last ALARM is a new chain.
    assert feed(state, alarm(at(1, 30))) == [OPENED]
    assert [(c.alarm_count, c.other_transitions) for c in state.chains] == [(1, 1), (1, 0)]
    assert (state.alarms_total, state.other_transitions_total) == (2, 3)


def test_the_same_event_twice_counts_once():
    state = AccountChains(account=A)
    feed(state, alarm(at(0)), alarm(at(0, 10), state="OK"))
    before = state.model_dump()
    assert feed(state, alarm(at(0)), alarm(at(0, 10), state="OK")) == [DUPLICATE, DUPLICATE]
    assert state.duplicates_total == 2
    assert state.model_dump() == {**before, "duplicates_total": 2}


def test_the_same_transition_in_another_shape_is_a_duplicate():
    eventbridge = parse_message((EXAMPLES / "alarms" / "eventbridge-alarm.json").read_text())
    classic = parse_message((EXAMPLES / "alarms" / "classic-sns-alarm.json").read_text())
    state = AccountChains(account=A)
    assert feed(state, eventbridge, classic) == [OPENED, DUPLICATE]
    assert spans(state) == [(eventbridge.event_time, eventbridge.event_time, 1)]


def _chain(jobs_started: int, last_job_state: str = "") -> Chain:
    return Chain(
        chain_id="incident/x",
        account=A,
        opened_at=T0,
        earliest_at=T0,
        latest_at=T0,
        alarm_count=1,
        jobs_started=jobs_started,
        last_job_state=last_job_state,
    )


@pytest.mark.parametrize(
    ("jobs_started", "last_job_state", "hold", "respawn"),
    [
        (0, "", True, True),
        (1, "RUNNING", False, False),
        (1, "SUCCEEDED", False, False),
        (1, "FAILED", False, True),
        (1, "CRASHED", False, True),
        (1, "TIMED_OUT", False, True),
        (1, "CANCELLED", False, True),
        (2, "FAILED", False, False),  # max_jobs_per_chain (2) reached
    ],
)
def test_wants_job_under_hold_and_respawn(jobs_started, last_job_state, hold, respawn):
    chain = _chain(jobs_started, last_job_state)
    assert wants_job(chain, ChainPolicy(on_failed_job="hold")) is hold
    assert wants_job(chain, ChainPolicy(on_failed_job="respawn", max_jobs_per_chain=2)) is respawn


def test_prune_drops_old_chains_and_their_event_ids_and_keeps_live_ones():
    state = AccountChains(account=A)
    assert prune(state, POLICY) == []
    old, edge, new = alarm(at(0), name="old"), alarm(at(10), name="edge"), alarm(at(35), name="new")
    feed(state, old, edge, new)
    # Horizon: 35 h - (24 h + 1 h) = 10 h. A chain ending exactly there stays.
    dropped = prune(state, POLICY)
    assert [c.chain_id for c in dropped] == ["incident/204772699175/2026-05-12T10:00:00Z"]
    assert [c.earliest_at for c in state.chains] == [at(10), at(35)]
    assert sorted(state.seen) == sorted([edge.event_id, new.event_id])
    # Documented price: the forgotten alarm, redelivered, is no longer known and opens a chain again.
    assert feed(state, old) == [OPENED]
    assert find_chain(state, "incident/204772699175/2026-05-12T10:00:00Z") is not None
    assert find_chain(state, "incident/nope") is None


def test_ten_thousand_alarms_a_third_of_a_second_apart_are_one_chain():
    """Correctness only: how fast the rule places them is a figure of `make bench`
    (benchmarks/chain_rule_bench.py, against a raw baseline of the same run), not a wall-clock bound here."""
    alarms = [alarm(at(seconds=0.3 * i), name=f"alarm-{i % 7}") for i in range(10_000)]
    state = AccountChains(account=A)
    kinds = [place_alarm(state, a, POLICY).kind for a in alarms]
    assert kinds == [OPENED] + [JOINED] * 9_999
    assert [(c.alarm_count, c.earliest_at, c.latest_at) for c in state.chains] == [
        (10_000, at(0), at(seconds=0.3 * 9_999))
    ]
    assert (state.alarms_total, state.duplicates_total, len(state.seen)) == (10_000, 0, 10_000)


@pytest.mark.parametrize(("on_failed_job", "a1_jobs"), [("hold", 1), ("respawn", 2)])
def test_the_worked_example_in_chaining_md(on_failed_job, a1_jobs):
    """T0 is 10:00, so `at(10)` is the 20:00 of the example."""
    policy = ChainPolicy(on_failed_job=on_failed_job)
    chains = {A: AccountChains(account=A), B: AccountChains(account=B)}
    arrivals = [
        (A, "cpu-high", "ALARM", at(10)),
        (A, "api-5xx", "ALARM", at(10, 25)),
        (B, "queue-depth", "ALARM", at(10, 30)),
        (A, "cpu-high", "ALARM", at(10)),
        (A, "cpu-high", "OK", at(10, 40)),
        (A, "db-latency", "ALARM", at(9, 35)),
        (A, "api-5xx", "ALARM", at(11, 26)),
        (B, "queue-depth", "INSUFFICIENT_DATA", at(13)),
        (A, "disk-full", "ALARM", at(7)),
        (B, "queue-depth", "ALARM", at(11, 30)),
        (A, "cpu-high", "ALARM", at(10, 10)),  # after A1's first job failed
    ]
    kinds = []
    for number, (account, name, state, event_time) in enumerate(arrivals, 1):
        if number == 11:
            chains[A].chains[0].last_job_state = "FAILED"
        placement = place_alarm(chains[account], alarm(event_time, name, state, account), policy)
        kinds.append(placement.kind)
        chain = find_chain(chains[account], placement.chain_id)
        if chain is not None and placement.kind != RECORDED and wants_job(chain, policy):
            chain.jobs_started += 1
            chain.last_job_state = "RUNNING"
    assert kinds == [
        OPENED,
        JOINED,
        OPENED,
        DUPLICATE,
        RECORDED,
        JOINED,
        OPENED,
        RECORDED,
        OPENED,
        JOINED,
        JOINED,
    ]
    summary = [
        (c.chain_id[9:], c.alarm_count, c.earliest_at, c.latest_at, c.other_transitions, c.jobs_started)
        for state in chains.values()
        for c in state.chains
    ]
    assert summary == [
        ("204772699175/2026-05-12T20:00:00Z", 4, at(9, 35), at(10, 25), 1, a1_jobs),
        ("204772699175/2026-05-12T21:26:00Z", 1, at(11, 26), at(11, 26), 0, 1),
        ("204772699175/2026-05-12T17:00:00Z", 1, at(7), at(7), 0, 1),
        ("111122223333/2026-05-12T20:30:00Z", 2, at(10, 30), at(11, 30), 0, 1),
    ]
    totals = [(s.alarms_total, s.duplicates_total, s.other_transitions_total) for s in chains.values()]
    assert totals == [(6, 1, 1), (2, 0, 1)]
