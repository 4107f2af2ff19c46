"""`agent-pool/<task queue>`: script tasks waiting for a pool agent, handed out oldest first.

Script workflows submit their task here (an activity signal-with-starts this workflow). An agent's
poll is the `claim` update: its validator rejects a poll that nothing matches, so the frequent empty
polls write nothing to history; the handler hands out the oldest task the agent's capabilities match
and tells that task's workflow who has it before the agent hears of it, so the task's lease starts
even if the reply to the agent is lost. All state is one model carried across continue-as-new.
"""

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from contracts.pool import (
        MAX_POOL_AGENTS,
        AgentRegistration,
        Assignment,
        Claim,
        PoolAgent,
        PoolState,
        PoolStatus,
        QueuedTask,
        ScriptTask,
        SubmitInput,
        Withdrawal,
        script_workflow_id,
    )

# An agent that neither registered nor claimed for this long is dropped from the registry at the next
# continue-as-new (the registry is for operators; claims never depend on it).
AGENT_FORGOTTEN_AFTER = timedelta(days=7)
# Claimed (task, attempt) pairs remembered, to ignore a repeated submit: far more than are ever in flight.
HANDED_OUT_KEPT = 10_000
# The script workflow's signal name (a string: the script workflow imports this module, not the reverse).
ASSIGNED_SIGNAL = "assigned"


@workflow.defn
class AgentPoolWorkflow:
    @workflow.init
    def __init__(self, state: PoolState) -> None:
        # Set here, not in run: a signal-with-start delivers its signal before run starts.
        self._state = state
        self._messages = 0
        self._closing = False

    @workflow.run
    async def run(self, state: PoolState) -> None:
        await workflow.wait_condition(self._should_continue_as_new)
        # Polls are turned away from now on, so the handlers in flight can finish even under load.
        self._closing = True
        await workflow.wait_condition(workflow.all_handlers_finished)
        self._forget_idle_agents()
        workflow.continue_as_new(self._state.model_copy(update={"runs": self._state.runs + 1}))

    @workflow.signal
    def submit(self, input: SubmitInput) -> None:
        queued = input.queued
        task_id = queued.task.task_id
        # Idempotent: the activity's retry, or a submit of an attempt already claimed, changes nothing.
        if self._state.handed_out.get(task_id, 0) >= queued.attempt:
            return
        if any(q.task.task_id == task_id and q.attempt >= queued.attempt for q in self._state.queue):
            return
        self._state.queue = [q for q in self._state.queue if q.task.task_id != task_id]
        self._state.queue.append(queued.model_copy(update={"enqueued_at": workflow.now()}))
        self._messages += 1

    @workflow.signal
    def withdraw(self, withdrawal: Withdrawal) -> None:
        self._state.queue = [q for q in self._state.queue if q.task.task_id != withdrawal.task_id]
        self._messages += 1

    @workflow.signal
    def register(self, registration: AgentRegistration) -> None:
        self._messages += 1
        if not self._room_for(registration.agent_id):
            workflow.logger.warning(
                "pool registry full (%d agents, MAX_POOL_AGENTS): %s not recorded",
                len(self._state.agents),
                registration.agent_id,
            )
            return
        self._state.agents[registration.agent_id] = PoolAgent(
            instance_id=registration.instance_id,
            capabilities=registration.capabilities,
            max_concurrency=registration.max_concurrency,
            registered_at=workflow.now(),
        )

    def _room_for(self, agent_id: str) -> bool:
        return agent_id in self._state.agents or len(self._state.agents) < MAX_POOL_AGENTS

    @workflow.update
    async def claim(self, claim: Claim) -> ScriptTask:
        self._messages += 1
        self._seen(claim)
        # Pops happen before each await, so concurrent claims never get the same task.
        while (index := self._next_for(claim.capabilities)) is not None:
            queued = self._state.queue.pop(index)
            self._remember_handed_out(queued)
            try:
                await workflow.get_external_workflow_handle(script_workflow_id(queued.task.task_id)).signal(
                    ASSIGNED_SIGNAL, Assignment(agent_id=claim.agent_id, attempt=queued.attempt)
                )
            except Exception as err:  # its workflow ended (timed out, cancelled) while it was queued
                workflow.logger.info("dropped task %s: %s", queued.task.task_id, err)
                continue
            return queued.task
        raise ApplicationError("no task for these capabilities", type="NoTask")

    @claim.validator
    def _claim_has_a_match(self, claim: Claim) -> None:
        if self._closing:
            raise ApplicationError("the pool is continuing as new; poll again", type="NoTask")
        if self._next_for(claim.capabilities) is None:
            raise ApplicationError("no task for these capabilities", type="NoTask")

    @workflow.query
    def status(self) -> PoolStatus:
        by_capability: dict[str, int] = {}
        for queued in self._state.queue:
            by_capability[queued.task.capability] = by_capability.get(queued.task.capability, 0) + 1
        return PoolStatus(
            queued=len(self._state.queue),
            queued_by_capability=by_capability,
            agents=self._state.agents,
            runs=self._state.runs,
        )

    def _next_for(self, capabilities: list[str]) -> int | None:
        wanted = set(capabilities)
        return next((i for i, q in enumerate(self._state.queue) if q.task.capability in wanted), None)

    def _seen(self, claim: Claim) -> None:
        agent = self._state.agents.get(claim.agent_id)
        if agent is None and not self._room_for(claim.agent_id):
            return  # the registry is full; the claim itself does not depend on it
        if agent is None:  # registered with an earlier pool run that was reset, or before it existed
            agent = self._state.agents[claim.agent_id] = PoolAgent(
                capabilities=claim.capabilities, registered_at=workflow.now()
            )
        agent.last_claim_at = workflow.now()

    def _remember_handed_out(self, queued: QueuedTask) -> None:
        handed_out = self._state.handed_out
        handed_out.pop(queued.task.task_id, None)  # re-insert: the dict's order is the age order
        handed_out[queued.task.task_id] = queued.attempt
        while len(handed_out) > HANDED_OUT_KEPT:
            del handed_out[next(iter(handed_out))]

    def _forget_idle_agents(self) -> None:
        cutoff = workflow.now() - AGENT_FORGOTTEN_AFTER
        self._state.agents = {
            agent_id: agent
            for agent_id, agent in self._state.agents.items()
            if max(agent.registered_at, agent.last_claim_at or agent.registered_at) >= cutoff
        }

    def _should_continue_as_new(self) -> bool:
        return (
            self._messages >= self._state.messages_per_run or workflow.info().is_continue_as_new_suggested()
        )
