"""Property tests: the repository claim under random interleavings of its signals (dev server, real worker).

Hypothesis chooses a sequence of steps: jobs ask (also again, as a retried activity does), release, end
(terminated, so a grant to them fails), and the claim's worker stops while signals pile up and comes
back (one activation then handles them all). The claim continues as new every few events, checks its
holders every quarter second and ends after a quarter second of idleness, so those paths interleave with the steps too.
After each step the claim must settle on what the pure model below says (FIFO, never more holders than
permits, no waiter lost, every release honoured, every ended holder freed, a grant delivered to every
live holder) with no workflow task failed. The claim as it was before the `holders.remove` fix
(`claim_doubles.ClaimWithRemoveBug`) must be caught by the same machine.
"""

import uuid
from dataclasses import dataclass, field

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from temporalio.client import WorkflowQueryFailedError
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from activities.claims import ClaimChecks
from contracts.claims import ClaimRelease, ClaimRequest, RepoClaimState
from tests.workflow.claim_doubles import ClaimWithRemoveBug, FakeClaimJob
from tests.workflow.harness import CLAIM_EXAMPLES, Harness, eventually, run_state_machine
from workflows.repo_claim import RepoClaimWorkflow

EXAMPLES = CLAIM_EXAMPLES  # see tests/workflow/harness.py
# The claim's own timers, short so they interleave with the steps (a step settles in ~0.1 s): holders
# checked, and the idle claim ended, after this long.
TIMER_SECONDS = 0.25
MAX_JOBS = 4
ACTIONS = ("request", "release", "end")


@dataclass
class ClaimModel:
    """What the claim must hold after it has handled every signal sent so far (the pure rule)."""

    permits: int
    holders: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
    unnotified: list[str] = field(default_factory=list)
    alive: set[str] = field(default_factory=set)
    # Turns each job was given: it must have heard at least that many grants. A retried request of a
    # holder is answered again only when it arrives after the grant, so more is allowed.
    turns: dict[str, int] = field(default_factory=dict)
    running: bool = False

    def request(self, job: str) -> None:
        self.running = True
        if job in self.holders:
            if job not in self.unnotified:
                self.unnotified.append(job)
        elif job not in self.waiting:
            self.waiting.append(job)

    def release(self, job: str) -> None:
        for line in (self.holders, self.waiting, self.unnotified):
            if job in line:
                line.remove(job)

    def settle(self) -> None:
        """Grant in order; an ended holder is freed (by its failed grant or the holder check): grant again."""
        while True:
            for job in [j for j in self.holders if j not in self.alive]:
                self.release(job)
            while self.waiting and len(self.holders) < self.permits:
                job = self.waiting.pop(0)
                self.holders.append(job)
                self.turns[job] = self.turns.get(job, 0) + 1
                if job not in self.unnotified:
                    self.unnotified.append(job)
            freed = False
            while self.unnotified:
                job = self.unnotified.pop(0)
                if job not in self.holders:
                    continue
                if job not in self.alive:
                    self.release(job)
                    freed = True
            if not freed:
                return

    @property
    def idle(self) -> bool:
        """The claim may have ended (after `TIMER_SECONDS` of this): a release then finds no workflow."""
        return not self.holders and not self.waiting


def claim_machine(harness: Harness, queue: str, jobs_queue: str) -> type[RuleBasedStateMachine]:
    client = harness.client

    class ClaimMachine(RuleBasedStateMachine):
        @initialize(permits=st.integers(min_value=1, max_value=2))
        def start(self, permits: int) -> None:
            self.claim_id = f"repo-claim/prop-{uuid.uuid4().hex[:10]}"
            self.model = ClaimModel(permits=permits)
            self.trace: list[str] = [f"permits={permits}"]
            self.jobs: list[str] = []
            for _ in range(2):
                self.add_job()

        # -- steps -------------------------------------------------------------------------------------

        @precondition(lambda self: len(self.jobs) < MAX_JOBS)
        @rule()
        def add_job(self) -> None:
            job = f"{self.claim_id}/job-{len(self.jobs)}"
            harness.run(client.start_workflow(FakeClaimJob.run, id=job, task_queue=jobs_queue))
            self.jobs.append(job)
            self.model.alive.add(job)

        @rule(data=st.data(), times=st.integers(min_value=1, max_value=2))
        def request(self, data, times: int) -> None:
            """Ask once, or twice in a row as a request activity that timed out and was retried does."""
            job = self._live_job(data)
            for _ in range(times):
                self._act("request", job)
            self._settle()

        @rule(data=st.data())
        def release(self, data) -> None:
            self._act("release", self._live_job(data))
            self._settle()

        @rule(data=st.data())
        def end_job(self, data) -> None:
            self._act("end", self._live_job(data))
            self._settle()

        @rule(
            actions=st.lists(
                st.tuples(st.sampled_from(ACTIONS), st.integers(min_value=0, max_value=MAX_JOBS - 1)),
                min_size=1,
                max_size=5,
            )
        )
        def while_the_worker_restarts(self, actions: list[tuple[str, int]]) -> None:
            """The claim's worker stops; these signals wait in history; a new worker handles them at once."""
            harness.pause()
            self.trace.append("worker stopped")
            for action, index in actions:
                if index < len(self.jobs) and self.jobs[index] in self.model.alive:
                    self._act(action, self.jobs[index])
            harness.resume()
            self.trace.append("worker started")
            self._settle()

        def _act(self, action: str, job: str | None) -> None:
            """Send one job's signal (or end the job); the model follows. Settling is the caller's."""
            if job is None:
                return
            self.trace.append(f"{action} {job.rsplit('/', 1)[-1]}")
            if action == "request":
                harness.run(
                    client.start_workflow(
                        "RepoClaimWorkflow",
                        RepoClaimState(
                            repo_url=self.claim_id,
                            permits=self.model.permits,
                            events_before_continue=10,
                            holder_check_seconds=TIMER_SECONDS,
                            idle_end_seconds=TIMER_SECONDS,
                        ),
                        id=self.claim_id,
                        task_queue=queue,
                        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                        start_signal="request",
                        start_signal_args=[ClaimRequest(job_workflow_id=job, permits=self.model.permits)],
                    )
                )
                self.model.request(job)
            elif action == "release" and self.model.running:
                release = ClaimRelease(job_workflow_id=job)
                try:
                    harness.run(client.get_workflow_handle(self.claim_id).signal("release", release))
                except RPCError as err:  # the claim ended idle: it holds nothing to release
                    assert err.status == RPCStatusCode.NOT_FOUND and self.model.idle, err
                self.model.release(job)
            elif action == "end":
                harness.run(client.get_workflow_handle(job).terminate("property test: the job ended"))
                self.model.alive.discard(job)

        @invariant()
        def no_workflow_task_failed(self) -> None:
            assert harness.failures.count == 0, dict(harness.failures.failing)

        def teardown(self) -> None:
            harness.resume()
            for job in self.model.alive:
                harness.run(client.get_workflow_handle(job).terminate("property test: example done"))
            if self.model.running:
                try:
                    harness.run(
                        client.get_workflow_handle(self.claim_id).terminate("property test: example done")
                    )
                except RPCError:
                    pass  # closed on its own meanwhile

        # -- checks ------------------------------------------------------------------------------------

        def _live_job(self, data) -> str | None:
            alive = sorted(self.model.alive)
            return data.draw(st.sampled_from(alive), label="job") if alive else None

        def _settle(self) -> None:
            """The claim must reach the model's state once it has handled every signal."""
            if not self.model.running:
                return
            self.model.settle()
            try:
                harness.run(eventually(self._matches_model))
            except AssertionError as err:
                history = harness.run(self._history())
                raise AssertionError(f"{err}\nsteps: {self.trace}\nclaim history: {history}") from None

        async def _matches_model(self) -> str | None:
            if harness.failures.count:
                raise AssertionError(f"workflow task failed: {dict(harness.failures.failing)}")
            try:
                state = await client.get_workflow_handle(self.claim_id).query(RepoClaimWorkflow.queue)
            except WorkflowQueryFailedError as err:  # its code raised while replaying for the query
                raise AssertionError(f"workflow task failed (seen by the query): {err}") from None
            except RPCError as err:  # between two runs of a continue-as-new, say
                return f"claim not queryable: {err}"
            model = self.model
            seen = (state.holders, state.waiting, state.to_notify)
            if seen != (model.holders, model.waiting, []):
                return f"claim (holders, waiting, to_notify) {seen} != model {(model.holders, model.waiting, [])}"
            assert len(state.holders) <= model.permits, "more holders than permits"
            assert not set(state.holders) & set(state.waiting), "a job both holds and waits"
            for job in model.alive:
                grants = await client.get_workflow_handle(job).query(FakeClaimJob.grants)
                if grants < model.turns.get(job, 0):
                    return f"{job} heard {grants} grants for {model.turns.get(job, 0)} turns"
            return None

        async def _history(self) -> list[str]:
            handle = client.get_workflow_handle(self.claim_id)
            return [event.WhichOneof("attributes") async for event in handle.fetch_history_events()]

    return ClaimMachine


def serve(harness: Harness, claim_workflow: type) -> type[RuleBasedStateMachine]:
    queue, jobs_queue = harness.serve(
        workflows=[claim_workflow],
        activities=[ClaimChecks(harness.client, "unused").closed_workflows],
        helper_workflows=[FakeClaimJob],
    )
    return claim_machine(harness, queue, jobs_queue)


@pytest.mark.timeout(max(1200, EXAMPLES * 30))  # 500 examples: a long run, on request
def test_claim_holds_under_every_interleaving(harness):
    run_state_machine(serve(harness, RepoClaimWorkflow), EXAMPLES, 14)


def test_the_machine_catches_the_old_holders_remove_bug(harness):
    """The machine's checks fail on the claim as it was before the fix. The interleaving is given here, not
    searched for: hypothesis' random search did not reach it within 300 examples (10 minutes on a loaded
    machine). A holder's request retried twice while the worker restarts, and the job ends meanwhile: both
    grants fail, and the second `holders.remove` raised."""
    machine = serve(harness, ClaimWithRemoveBug)()
    machine.start(permits=1)
    first = machine.jobs[0]
    machine._act("request", first)
    machine._settle()
    with pytest.raises(AssertionError):  # the settle check, or the invariant checked after each step
        machine.while_the_worker_restarts([("request", 0), ("request", 0), ("end", 0)])

        async def a_task_failed() -> str | None:
            return None if harness.failures.count else "no workflow task failed yet"

        harness.run(eventually(a_task_failed))
        machine.no_workflow_task_failed()
    assert any("list.remove(x): x not in list" in cause for cause in harness.failures.failing.values())
    machine.teardown()
