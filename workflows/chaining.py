"""The chain rule: which incident chain an alarm belongs to, by the alarm's own event time.

Pure and deterministic (no I/O, no clock, no randomness): the incident chain workflow imports it through
`imports_passed_through`, so it uses only the stdlib and `contracts`. The rule in prose, with a worked
example, is in the README, "Incident chains".
"""

from datetime import UTC, datetime

from contracts.alarms import AccountChains, Alarm, AlarmState, Chain, ChainPolicy, Placement, PlacementKind
from contracts.jobs import JobState

# A job that ended in one of these may be followed by another when the policy says "respawn".
_FAILED = frozenset(
    {JobState.FAILED, JobState.CRASHED, JobState.TIMED_OUT, JobState.CANCELLED, JobState.NO_CHANGES}
)


def chain_id_for(account: str, opened_at: datetime) -> str:
    """`incident/204772699175/2026-05-12T20:00:00Z`: the account and the event time of the chain's first ALARM."""
    return f"incident/{account}/{opened_at.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}"


def find_chain(state: AccountChains, chain_id: str | None) -> Chain | None:
    return next((c for c in state.chains if c.chain_id == chain_id), None)


def place_alarm(state: AccountChains, alarm: Alarm, policy: ChainPolicy) -> Placement:
    """Place one alarm state change on the account's chains; mutates `state`."""
    if alarm.account != state.account:
        # A bug upstream (routing by account), not bad input: fail loudly rather than mix two accounts.
        raise ValueError(f"alarm of account {alarm.account} placed on the chains of {state.account}")
    if alarm.event_id in state.seen:
        state.duplicates_total += 1
        return Placement(kind=PlacementKind.DUPLICATE)
    t = alarm.event_time
    state.seen[alarm.event_id] = t
    state.latest_event_at = t if state.latest_event_at is None else max(state.latest_event_at, t)
    # Of several chains that could take the event, the most recent one; chains are never merged, because
    # each may already have a job working on it (README, "Late and out-of-order alarms").
    chain = max(_candidates(state, t, policy), key=lambda c: c.latest_at, default=None)

    if alarm.state != AlarmState.ALARM:
        state.other_transitions_total += 1
        if chain is not None:
            chain.other_transitions += 1
        return Placement(kind=PlacementKind.RECORDED, chain_id=chain.chain_id if chain else None)

    state.alarms_total += 1
    if chain is not None:
        chain.earliest_at = min(chain.earliest_at, t)
        chain.latest_at = max(chain.latest_at, t)
        chain.alarm_count += 1
        return Placement(kind=PlacementKind.JOINED, chain_id=chain.chain_id)
    chain = Chain(
        chain_id=_unused_id(state, chain_id_for(state.account, t)),
        account=state.account,
        opened_at=t,
        earliest_at=t,
        latest_at=t,
        alarm_count=1,
    )
    state.chains.append(chain)
    return Placement(kind=PlacementKind.OPENED, chain_id=chain.chain_id)


# Event ids remembered for dedup; ~5,000 ids keep the carried state well under Temporal's payload limit.
SEEN_LIMIT = 5000


def prune(state: AccountChains, policy: ChainPolicy) -> list[Chain]:
    """Forget chains and event ids older than the horizon; returns the chains removed.

    The horizon is `max_age + window` before the newest event time seen. No alarm that is on time, or late by
    less than `max_age`, can still join a chain that ended before it, so the workflow's state stays bounded.
    The price: an alarm (or a redelivery) older than the horizon that arrives later is not recognized; it
    opens a new chain of its own, whose id may equal the id of the forgotten chain.
    """
    if state.latest_event_at is None:
        return []
    horizon = state.latest_event_at - (policy.max_age + policy.window)
    dropped = [c for c in state.chains if c.latest_at < horizon]
    if dropped:
        state.chains = [c for c in state.chains if c.latest_at >= horizon]
    # Rebuilt only when something expired: the workflow calls this after every batch.
    if any(t < horizon for t in state.seen.values()):
        state.seen = {event_id: t for event_id, t in state.seen.items() if t >= horizon}
    if len(state.seen) > SEEN_LIMIT:
        # The state rides in a continue-as-new payload (2 MB limit), so a storm may not grow it without
        # bound: keep the newest ids. A redelivery older than these is counted again (never re-spawned:
        # its chain already has its job).
        newest = sorted(state.seen.items(), key=lambda item: (item[1], item[0]))[-SEEN_LIMIT:]
        state.seen = dict(newest)
    return dropped


def wants_job(chain: Chain, policy: ChainPolicy) -> bool:
    """Whether the chain should start a job now: its first, or (policy "respawn") one after a failed job."""
    if chain.jobs_started == 0:
        return True
    return (
        chain.last_job_state in _FAILED
        and policy.on_failed_job == "respawn"
        and chain.jobs_started < policy.max_jobs_per_chain
    )


def _candidates(state: AccountChains, t: datetime, policy: ChainPolicy) -> list[Chain]:
    """Chains an event at `t` may join: within `window` of the chain, and the chain never spans over `max_age`."""
    return [
        c
        for c in state.chains
        if c.earliest_at - policy.window <= t <= c.latest_at + policy.window
        and max(c.latest_at, t) - min(c.earliest_at, t) <= policy.max_age
    ]


def _unused_id(state: AccountChains, chain_id: str) -> str:
    """Ids have whole seconds, and a chain full at `max_age` may be followed within its second; suffix it."""
    taken = {c.chain_id for c in state.chains}
    if chain_id not in taken:
        return chain_id
    n = 2
    while f"{chain_id}-{n}" in taken:
        n += 1
    return f"{chain_id}-{n}"
