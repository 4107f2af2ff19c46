"""Property tests: the agent pool and its script tasks under random steps (dev server, real worker).

Hypothesis chooses: scripts submitted (each a `ScriptTaskWorkflow`, whose activity submits it to the pool),
polls by agents with different capabilities, final reports (from the holder, or refused from another
agent), withdrawals, agents lost (a "fragile" task's agent never beats: its quarter-second lease runs out,
the task is queued again as attempt 2, and lost again it fails as `infrastructure`), and steps while the
worker is stopped (submits and withdrawals pile up and reach the pool in one activation; each script's
own submit comes later, a duplicate the pool must ignore). The pool continues as new every 3 messages.
After each step, the pool and every script must settle on the pure model below: each poll gets the oldest
queued task its capabilities match (FIFO per capability) or nothing, every attempt is handed to at most one
agent, every script ends exactly once with the outcome its reports decide, and no workflow task fails.
A pool that hands out the newest task (`pool_doubles.PoolHandsOutNewest`) must be caught by the machine.
"""

import uuid
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from hypothesis import Phase
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from temporalio.client import WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError

from activities.pool_dispatch import submit_script_task
from contracts.jobs import FailureClass
from contracts.pool import (
    AgentReport,
    Claim,
    PoolState,
    QueuedTask,
    ReportStatus,
    ScriptResult,
    ScriptStatus,
    ScriptTask,
    ScriptTaskInput,
    SubmitInput,
    TaskReport,
    Withdrawal,
    pool_workflow_id,
    script_workflow_id,
)
from tests.workflow.harness import SLOW_EXAMPLES, Harness, run_state_machine
from tests.workflow.pool_doubles import PoolHandsOutNewest
from workflows.agent_pool import AgentPoolWorkflow
from workflows.script_task import ScriptTaskWorkflow

EXAMPLES = SLOW_EXAMPLES  # see tests/workflow/harness.py
AGENTS = {"sh": ["shell"], "py": ["python"], "both": ["python", "shell"]}
CAPABILITIES = ("shell", "python", "gpu")  # no agent has "gpu": such a task stays queued
# A fragile task's agent never beats: lost after this long (each poll that hands one out waits it out).
FRAGILE_LEASE_SECONDS = 0.25
STEADY_LEASE_SECONDS = 600.0
RPC_TIMEOUT = timedelta(seconds=2)


@dataclass
class TaskModel:
    task_id: str
    capability: str
    fragile: bool
    attempt: int = 1
    agent: str = ""  # the holder of the current attempt
    result: tuple[ScriptStatus, str, int] | None = None  # (status, agent, attempts) once ended
    withdrawn: bool = False
    checked: bool = False  # its end has been read once from the workflow's result


@dataclass
class PoolModel:
    """What the pool and scripts must hold once they have handled every step so far."""

    queue: list[str] = field(default_factory=list)  # task ids, oldest first
    tasks: dict[str, TaskModel] = field(default_factory=dict)

    def next_for(self, capabilities: list[str]) -> TaskModel | None:
        return next((self.tasks[t] for t in self.queue if self.tasks[t].capability in capabilities), None)

    def claim(self, agent: str, capabilities: list[str]) -> TaskModel | None:
        task = self.next_for(capabilities)
        if task is None:
            return None
        self.queue.remove(task.task_id)
        task.agent = agent
        return task

    def lose(self, task: TaskModel) -> None:
        """A fragile task's agent sent no beat for a lease: queued again, or failed after 2 attempts."""
        if task.attempt < 2:
            task.attempt += 1
            task.agent = ""
            self.queue.append(task.task_id)
        else:
            task.result = (ScriptStatus.FAILED, "", task.attempt)

    @property
    def running(self) -> list[TaskModel]:
        return [t for t in self.tasks.values() if t.agent and t.result is None and not t.fragile]


def pool_machine(harness: Harness, queue: str) -> type[RuleBasedStateMachine]:
    client = harness.client
    pool = client.get_workflow_handle(pool_workflow_id(queue))

    class PoolMachine(RuleBasedStateMachine):
        @initialize()
        def start(self) -> None:
            self.model = PoolModel()
            self.trace: list[str] = []
            # A fresh pool per example (the pool's id is its task queue's); it continues as new often. A pool
            # the last example left running is replaced. Seen once in a CI rehearsal: this start failed
            # "already started" and hypothesis reported the example as flaky. The teardown's terminate goes to
            # whichever run is current, and a submit still in flight from that example can start the pool
            # again by update-with-start; the server logged such updates refused "workflow is closing" just
            # before. Which of the two left it running there was not pinned down.
            harness.run(
                client.start_workflow(
                    "AgentPoolWorkflow",
                    PoolState(messages_per_run=3),
                    id=pool.id,
                    task_queue=queue,
                    id_conflict_policy=WorkflowIDConflictPolicy.TERMINATE_EXISTING,
                )
            )

        # -- steps -------------------------------------------------------------------------------------

        @rule(capability=st.sampled_from(CAPABILITIES), fragile=st.booleans())
        def submit(self, capability: str, fragile: bool) -> None:
            self._start_script(capability, fragile)
            self._settle()

        @rule(agent=st.sampled_from(sorted(AGENTS)))
        def poll(self, agent: str) -> None:
            """An agent's poll: the oldest task its capabilities match, or a refusal when nothing does."""
            expected = self.model.claim(agent, AGENTS[agent])
            self.trace.append(f"poll {agent} -> {expected.task_id[:6] if expected else None}")
            try:
                got = harness.run(
                    pool.execute_update(
                        AgentPoolWorkflow.claim,
                        Claim(agent_id=agent, capabilities=AGENTS[agent]),
                        result_type=ScriptTask,
                        rpc_timeout=timedelta(seconds=30),
                    )
                ).task_id
            except WorkflowUpdateFailedError as err:
                assert err.cause.type == "NoTask", err
                got = None
            assert got == (expected.task_id if expected else None), (
                f"{agent} was handed {got}, the model says {expected}\nsteps: {self.trace}"
            )
            if expected is not None and expected.fragile:  # its agent is lost: no beat, ever
                self.model.lose(expected)
                self.trace.append(f"lost {expected.task_id[:6]}")
            self._settle()

        @precondition(lambda self: self.model.running)
        @rule(data=st.data(), status=st.sampled_from([ReportStatus.COMPLETED, ReportStatus.FAILED]))
        def report(self, data, status: ReportStatus) -> None:
            """The final report of a task: from its holder (accepted) or from another agent (refused)."""
            task = data.draw(st.sampled_from(self.model.running), label="task")
            agent = data.draw(st.sampled_from(sorted(AGENTS)), label="agent")
            self.trace.append(f"report {status} {task.task_id[:6]} by {agent}")
            handle = client.get_workflow_handle(script_workflow_id(task.task_id))
            message = AgentReport(agent_id=agent, report=TaskReport(status=status, exit_code=0))
            try:
                harness.run(
                    handle.execute_update(ScriptTaskWorkflow.report, message, rpc_timeout=RPC_TIMEOUT * 15)
                )
                refused = None
            except WorkflowUpdateFailedError as err:
                refused = err.cause.type
            if agent == task.agent:
                assert refused is None, f"the holder's report was refused: {refused}"
                final = ScriptStatus.COMPLETED if status == ReportStatus.COMPLETED else ScriptStatus.FAILED
                task.result = (final, agent, task.attempt)
            else:
                assert refused == "NotYourTask", f"{agent}'s report on {task.agent}'s task: {refused}"
            self._settle()

        @precondition(lambda self: self.model.queue)
        @rule(data=st.data())
        def withdraw(self, data) -> None:
            """A queued task is withdrawn (as its script does at its queue timeout); the script ends."""
            self._withdraw(data.draw(st.sampled_from(self.model.queue), label="task"))
            self._settle()

        @rule(
            data=st.data(),
            submits=st.lists(st.tuples(st.sampled_from(CAPABILITIES), st.booleans()), max_size=3),
        )
        def while_the_worker_restarts(self, data, submits: list[tuple[str, bool]]) -> None:
            """The worker stops; submits (sent as each script's activity would, in a known order) and
            withdrawals wait in the pool's history; a new worker handles them in one activation."""
            withdrawable = list(self.model.queue)
            harness.pause()
            self.trace.append("worker stopped")
            for capability, fragile in submits:
                self._start_script(capability, fragile, submit_now=True)
            if withdrawable and data.draw(st.booleans(), label="withdraw"):
                self._withdraw(data.draw(st.sampled_from(withdrawable), label="task"))
            harness.resume()
            self.trace.append("worker started")
            self._settle()

        def _start_script(self, capability: str, fragile: bool, submit_now: bool = False) -> None:
            task = ScriptTask(task_id=uuid.uuid4().hex[:12], script="true", capability=capability)
            lease = FRAGILE_LEASE_SECONDS if fragile else STEADY_LEASE_SECONDS
            harness.run(
                client.start_workflow(
                    ScriptTaskWorkflow.run,
                    ScriptTaskInput(
                        task=task, lease_seconds=lease, max_attempts=2, queue_timeout_seconds=3600
                    ),
                    id=script_workflow_id(task.task_id),
                    task_queue=queue,
                )
            )
            if submit_now:
                harness.run(
                    pool.signal(
                        AgentPoolWorkflow.submit, SubmitInput(queued=QueuedTask(task=task, attempt=1))
                    )
                )
            self.trace.append(f"submit {task.task_id[:6]} {capability}{' fragile' if fragile else ''}")
            self.model.tasks[task.task_id] = TaskModel(task.task_id, capability, fragile)
            self.model.queue.append(task.task_id)

        def _withdraw(self, task_id: str) -> None:
            self.trace.append(f"withdraw {task_id[:6]}")
            harness.run(pool.signal(AgentPoolWorkflow.withdraw, Withdrawal(task_id=task_id)))
            harness.run(client.get_workflow_handle(script_workflow_id(task_id)).terminate("withdrawn"))
            self.model.queue.remove(task_id)
            self.model.tasks[task_id].withdrawn = True

        @invariant()
        def no_workflow_task_failed(self) -> None:
            assert harness.failures.count == 0, dict(harness.failures.failing)

        def teardown(self) -> None:
            harness.resume()
            for task in self.model.tasks.values():
                if task.result is None and not task.withdrawn:
                    harness.run(
                        client.get_workflow_handle(script_workflow_id(task.task_id)).terminate("done")
                    )
            try:
                harness.run(pool.terminate("property test: example done"))
            except RPCError:
                pass

        # -- checks ------------------------------------------------------------------------------------

        def _settle(self) -> None:
            harness.settle(self._matches_model, self.trace)

        async def _matches_model(self) -> str | None:
            if harness.failures.count:
                raise AssertionError(f"workflow task failed: {dict(harness.failures.failing)}")
            try:
                status = await pool.query(AgentPoolWorkflow.status, rpc_timeout=RPC_TIMEOUT)
            except RPCError as err:  # between two runs of a continue-as-new, say
                return f"pool not queryable: {err}"
            by_capability: dict[str, int] = {}
            for task_id in self.model.queue:
                capability = self.model.tasks[task_id].capability
                by_capability[capability] = by_capability.get(capability, 0) + 1
            if status.queued_by_capability != by_capability:
                return f"pool queue {status.queued_by_capability} != model {by_capability}"
            for task in self.model.tasks.values():
                if task.withdrawn or task.checked:
                    continue
                handle = client.get_workflow_handle(
                    script_workflow_id(task.task_id), result_type=ScriptResult
                )
                if task.result is not None:
                    described = await handle.describe()
                    if described.status != WorkflowExecutionStatus.COMPLETED:
                        return f"{task.task_id} is {described.status}, the model says it ended"
                    result = await handle.result()
                    assert (result.status, result.agent_id, result.attempts) == task.result, (result, task)
                    if task.fragile:
                        assert result.failure_class == FailureClass.INFRASTRUCTURE, result
                    task.checked = True
                    continue
                try:
                    seen = await handle.query(ScriptTaskWorkflow.status, rpc_timeout=RPC_TIMEOUT)
                except RPCError as err:
                    return f"{task.task_id} not queryable: {err}"
                state = "running" if task.agent else "queued"
                if (seen.state, seen.attempt, seen.agent_id) != (state, task.attempt, task.agent):
                    return f"{task.task_id}: {(seen.state, seen.attempt, seen.agent_id)} != {(state, task.attempt, task.agent)}"
                # Its own submit must have reached the pool too (a duplicate, when the test sent it first).
                if not task.agent and (await handle.describe()).raw_description.pending_activities:
                    return f"{task.task_id}: its submit is in flight"
            return None

    return PoolMachine


def run_machine(harness: Harness, pool_workflow: type, examples: int, **options) -> None:
    queue, _ = harness.serve(workflows=[pool_workflow, ScriptTaskWorkflow], activities=[submit_script_task])
    machine = pool_machine(harness, queue)
    run_state_machine(machine, examples, 10, **options)


@pytest.mark.slow
@pytest.mark.timeout(max(1200, EXAMPLES * 30))  # 500 examples: a long run, on request
def test_no_task_is_lost_or_run_twice_under_every_interleaving(harness):
    run_machine(harness, AgentPoolWorkflow, EXAMPLES)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_pool_that_hands_out_the_newest_task_is_found(harness):
    with pytest.raises(AssertionError, match="was handed"):
        run_machine(harness, PoolHandsOutNewest, 100, derandomize=True, phases=[Phase.generate])
