"""`alarms/<account>`: every alarm of one AWS account arrives here; this workflow owns the chain decisions.

Alarms come in by signal-with-start. Each is placed by the chain rule (`workflows/chaining.py`); a chain
that wants a job gets an `AgentJobWorkflow` with id `incident/<account>/<chain start>`, and later alarms
of a live chain reach that job's dossier in batches; each chain's jobs' outcomes and alarms go to its
report issue (`workflows/chain_reports.py`). State lives in one model carried across
continue-as-new, so an alarm storm never grows one run's history without bound.
"""

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from contracts import search_attributes as sa
    from contracts.alarms import AccountChains, Alarm, AlarmBatch, Chain, PlacementKind
    from contracts.ids import incident_branch, incident_job_id, incident_key
    from contracts.incidents import Decision, IncidentChainInput, IncidentChainStatus, JobFinished
    from contracts.jobs import JobSpec, WorkItem
    from workflows.agent_job import AgentJobWorkflow
    from workflows.chain_reports import ChainReports
    from workflows.chaining import find_chain, place_alarm, prune, wants_job
    from workflows.job_operations import DOSSIER_LIMIT

# Later alarms are forwarded to a running job at most this often (or once this many have queued up),
# so a storm costs the job a few signals, not one per alarm.
FORWARD_EVERY = timedelta(seconds=5)
FORWARD_BATCH = 100
# Continue-as-new after this many alarms even if the server has not suggested it yet (the default of
# `IncidentChainInput.alarms_per_run`).
ALARMS_PER_RUN = IncidentChainInput.model_fields["alarms_per_run"].default
DECISIONS_KEPT = 200
# A workflow task must finish within the SDK's 2 s deadlock timeout, or the task fails (and, seen in
# tests, the worker can then never evict the run: its shutdown hangs). A storm delivers thousands of
# alarms in one task, and placing 2,700 took 6 s on a loaded machine, so each task places at most this many.
PLACE_PER_TURN = 500
PLACE_IN_SLICES = "place-alarms-in-slices"
SLICE_PAUSE = timedelta(milliseconds=1)
# At most this many undecided alarms ride in a continue-as-new input (~230 bytes each); more are decided
# first (`_drain_before_continuing`).
CARRY_PENDING_LIMIT = 500
DECIDE_BEFORE_CONTINUING = "decide-pending-before-continuing"
# Temporal ends a run at 50,000 events; deciding stops well before.
DRAIN_HISTORY_LIMIT = 40_000


@workflow.defn
class IncidentChainWorkflow:
    def __init__(self) -> None:
        self._pending: list[Alarm] = []
        self._finished: list[JobFinished] = []
        self._outbox: dict[str, list[Alarm]] = {}
        self._outbox_since: datetime | None = None
        self._decisions: list[Decision] = []
        self._input: IncidentChainInput | None = None
        self._chains: AccountChains | None = None
        self._placed_this_run = 0
        self._reports = ChainReports()

    @workflow.run
    async def run(self, input: IncidentChainInput) -> None:
        self._input = input
        self._chains = input.chains or AccountChains(account=input.account)
        self._pending = input.pending + self._pending
        self._decisions = input.decisions
        self._reports.bind(input, self._chains)
        workflow.upsert_search_attributes(
            [sa.JOB_KIND.value_set("alarms"), sa.AWS_ACCOUNT.value_set(input.account)]
        )
        idle_limit = input.policy.max_age + input.policy.window
        while True:
            try:
                await workflow.wait_condition(self._has_work, timeout=self._next_wakeup(idle_limit))
            except TimeoutError:
                if self._may_end():
                    return  # idle past every chain's horizon: a new alarm starts a fresh run
            self._take_job_reports()
            await self._place_pending()
            await self._forward(force=False)
            self._reports.send()
            workflow.set_current_details(self._details())
            if self._should_continue_as_new():
                await self._drain_before_continuing()
                # Alarms still pending ride along: under a sustained storm there is never a quiet moment.
                workflow.continue_as_new(self._carry_over())

    @workflow.signal
    def alarm(self, alarm: Alarm) -> None:
        self._pending.append(alarm)

    @workflow.signal
    def alarms(self, batch: AlarmBatch) -> None:
        self._pending.extend(batch.alarms)

    @workflow.signal
    def job_finished(self, finished: JobFinished) -> None:
        self._finished.append(finished)

    @workflow.query
    def status(self) -> IncidentChainStatus:
        return IncidentChainStatus(
            account=self._input.account if self._input else "",
            chains=self._chains or AccountChains(account=""),
            pending=len(self._pending),
            runs=self._input.runs if self._input else 0,
            recent_decisions=list(self._decisions),
        )

    # The steps of one turn ---------------------------------------------------------------------

    def _take_job_reports(self) -> None:
        reports, self._finished = self._finished, []
        for report in reports:
            chain = find_chain(self._chains, report.chain_id)
            if chain is not None and chain.last_job_id == report.job_id:
                chain.last_job_state = report.state
            self._reports.job_ended(report)

    async def _place_pending(self) -> None:
        # Alarms delivered together are placed in event-time order: chains never merge, so placing a
        # 10:40 alarm after 11:30 would split what its event times make one incident.
        batch, self._pending = sorted(self._pending, key=lambda a: (a.event_time, a.event_id)), []
        sliced = len(batch) > PLACE_PER_TURN and workflow.patched(PLACE_IN_SLICES)
        if sliced:
            batch, self._pending = batch[:PLACE_PER_TURN], batch[PLACE_PER_TURN:]
        policy = self._input.policy
        for alarm in batch:
            placement = place_alarm(self._chains, alarm, policy)
            decision = Decision(
                event_id=alarm.event_id,
                alarm_name=alarm.alarm_name,
                state=alarm.state,
                event_time=alarm.event_time.isoformat(),
                placement=placement,
            )
            # Logged before any await, so a query never sees an alarm counted but not yet decided.
            self._decisions = (self._decisions + [decision])[-DECISIONS_KEPT:]
            self._placed_this_run += 1
            if placement.kind in (PlacementKind.JOINED, PlacementKind.OPENED):
                chain = find_chain(self._chains, placement.chain_id)
                self._add_to_dossier(chain.chain_id, alarm)
                if wants_job(chain, policy):
                    decision.spawned_job_id = await self._spawn(chain)
                elif chain.last_job_state == "RUNNING":
                    self._queue_forward(chain.last_job_id, alarm)
                self._reports.alarm_joined(chain.chain_id)
        for dropped in prune(self._chains, policy):
            self._input.dossiers.pop(dropped.chain_id, None)
            self._reports.forget(dropped.chain_id)
        if sliced:
            # A timer ends this workflow task, so the rest are placed in the next one (see PLACE_PER_TURN).
            await workflow.sleep(SLICE_PAUSE)

    async def _spawn(self, chain: Chain) -> str:
        number = chain.jobs_started + 1
        job_id = incident_job_id(chain.chain_id, number)
        dossier = self._input.dossiers.get(chain.chain_id, [])
        names = sorted({a.alarm_name for a in dossier})
        spec = JobSpec(
            job_id=job_id,
            work=WorkItem(
                kind="incident",
                key=incident_key(chain.chain_id),
                summary=f"{chain.alarm_count} alarm(s) in AWS account {chain.account}: {', '.join(names)}"[
                    :200
                ],
                description=_dossier_text(chain, dossier),
            ),
            branch=incident_branch(chain.chain_id, number),
            account=chain.account,
            alarms=dossier,
            notify_workflow_id=workflow.info().workflow_id,
            chain_id=chain.chain_id,
        )
        try:
            handle = await workflow.start_child_workflow(
                AgentJobWorkflow.run,
                spec,
                id=job_id,
                task_queue=self._input.task_queue or None,
                # The job outlives this run: continue-as-new must not cancel it.
                parent_close_policy=ParentClosePolicy.ABANDON,
                static_summary=f"Incident job: {spec.work.summary}"[:200],
            )
            # The job reports its end by the `job_finished` signal (which survives continue-as-new);
            # its result future is read here only so asyncio does not warn it was never retrieved.
            handle.add_done_callback(lambda done: done.cancelled() or done.exception())
        except WorkflowAlreadyStartedError:
            pass  # started by an earlier turn whose bookkeeping was lost; the job is running
        chain.jobs_started = number
        chain.last_job_id = job_id
        chain.last_job_state = "RUNNING"
        return job_id

    def _queue_forward(self, job_id: str, alarm: Alarm) -> None:
        self._outbox.setdefault(job_id, []).append(alarm)
        self._outbox_since = self._outbox_since or workflow.now()

    async def _forward(self, force: bool) -> None:
        if not self._outbox or not (force or self._forward_due()):
            return
        outbox, self._outbox, self._outbox_since = self._outbox, {}, None
        for job_id, alarms in outbox.items():
            try:
                await workflow.get_external_workflow_handle(job_id).signal(
                    AgentJobWorkflow.add_alarms, AlarmBatch(alarms=alarms)
                )
            except Exception as err:  # the job ended meanwhile; its chain's dossier still has them
                workflow.logger.info("could not forward %d alarm(s) to %s: %s", len(alarms), job_id, err)

    async def _drain_before_continuing(self) -> None:
        """Decide what arrived while this run was winding down, so the carried state stays small.

        Every await here lets a storm deliver more alarms; carrying them all undecided once made a
        continue-as-new input of 1.7 MB (7,300 alarms) — near Temporal's 2 MB payload limit, past which the
        continue-as-new fails on every retry and the account's chain is wedged. Each pass decides all that
        is pending, so only what one last activation brings (at most `CARRY_PENDING_LIMIT`) rides along.
        """
        while True:
            await self._forward(force=True)
            await workflow.wait_condition(workflow.all_handlers_finished)
            self._take_job_reports()
            # Patched: a run recorded before this carried every pending alarm straight over.
            if len(self._pending) <= CARRY_PENDING_LIMIT or not workflow.patched(DECIDE_BEFORE_CONTINUING):
                return
            if workflow.info().get_current_history_length() >= DRAIN_HISTORY_LIMIT:
                return  # a storm faster than this worker: the run's history limit comes first
            await self._place_pending()

    # Conditions ------------------------------------------------------------------------------

    def _has_work(self) -> bool:
        return bool(self._pending or self._finished) or self._forward_due() or self._should_continue_as_new()

    def _forward_due(self) -> bool:
        if not self._outbox:
            return False
        queued = sum(len(alarms) for alarms in self._outbox.values())
        return queued >= FORWARD_BATCH or workflow.now() - self._outbox_since >= FORWARD_EVERY

    def _next_wakeup(self, idle_limit: timedelta) -> timedelta:
        if self._outbox_since is not None:
            return max(FORWARD_EVERY - (workflow.now() - self._outbox_since), timedelta(milliseconds=1))
        return idle_limit

    def _may_end(self) -> bool:
        running = any(chain.last_job_state == "RUNNING" for chain in self._chains.chains)
        return not (self._pending or self._finished or self._outbox or running) and self._reports.idle()

    def _should_continue_as_new(self) -> bool:
        return (
            self._placed_this_run >= self._input.alarms_per_run
            or workflow.info().is_continue_as_new_suggested()
        )

    def _add_to_dossier(self, chain_id: str, alarm: Alarm) -> None:
        dossier = self._input.dossiers.setdefault(chain_id, [])
        dossier.append(alarm)
        del dossier[:-DOSSIER_LIMIT]

    def _details(self) -> str:
        """The Web UI's "current details": the account's chains and what their jobs are doing."""
        totals = self._chains
        lines = [
            f"**{len(totals.chains)} chain(s)** held; {totals.alarms_total} ALARM(s), "
            f"{totals.duplicates_total} duplicate(s), {totals.other_transitions_total} OK/INSUFFICIENT_DATA; "
            f"run {self._input.runs + 1}"
        ]
        for chain in totals.chains[-10:]:
            lines.append(
                f"- `{chain.chain_id}`: {chain.alarm_count} alarm(s), {chain.latest_at.isoformat()}; "
                f"job `{chain.last_job_id or '-'}` {chain.last_job_state or ''}"
            )
        return "\n".join(lines)

    def _carry_over(self) -> IncidentChainInput:
        return self._input.model_copy(
            update={
                "chains": self._chains,
                "pending": self._pending,
                "decisions": self._decisions,
                "runs": self._input.runs + 1,
                "reports_due": self._reports.due_to_carry(),
            }
        )


def _dossier_text(chain: Chain, dossier: list[Alarm]) -> str:
    lines = [
        f"Incident chain `{chain.chain_id}`: {chain.alarm_count} ALARM transition(s) in account {chain.account} "
        f"between {chain.earliest_at.isoformat()} and {chain.latest_at.isoformat()}.",
        "",
        "| event time | alarm | region | state | reason |",
        "|---|---|---|---|---|",
    ]
    for alarm in dossier[-20:]:
        reason = alarm.reason.replace("|", "/")[:160]
        lines.append(
            f"| {alarm.event_time.isoformat()} | {alarm.alarm_name} | {alarm.region} | {alarm.state} | {reason} |"
        )
    if len(dossier) > 20:
        lines.append(f"\n(the last 20 of {len(dossier)} listed; all are in incident/alarms.json)")
    return "\n".join(lines)
