"""`agent-pool/<task queue>`: script tasks waiting for a pool agent, handed out oldest first.

Script workflows submit their task here (an activity signal-with-starts this workflow). An agent's
poll is the `claim` update: its validator rejects a poll that nothing matches, so the frequent empty
polls write nothing to history; the handler hands out the oldest task the agent's capabilities match
and tells that task's workflow who has it before the agent hears of it, so the task's lease starts
even if the reply to the agent is lost. All state is one model carried across continue-as-new.
"""

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from contracts.pool import (
        MAX_POOL_AGENTS,
        MAX_QUEUED_TASKS,
        QUEUE_BYTES_LIMIT,
        REGISTRY_BYTES_LIMIT,
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
        registry_entry_bytes,
        script_workflow_id,
    )

# An agent that neither registered nor claimed for this long is dropped from the registry at the next
# continue-as-new (the registry is for operators; claims never depend on it).
AGENT_FORGOTTEN_AFTER = timedelta(days=1)
# When the registry is full (contracts/pool.py: MAX_POOL_AGENTS, REGISTRY_BYTES_LIMIT), agents silent
# this long are forgotten at once to make room; if that is not enough, a new agent is refused.
AGENT_EVICTABLE_AFTER = timedelta(minutes=10)
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
        self._registry_bytes = sum(registry_entry_bytes(i, a) for i, a in state.agents.items())
        # Bumped on every registry change; keys the evictable-agents cache (a full registry is asked
        # once per refused registration, and a burst of them arrives in one activation).
        self._registry_version = 0
        self._evictable_cache: tuple[datetime, int, list[str]] | None = None
        self._signals_left_out = 0

    @workflow.run
    async def run(self, state: PoolState) -> None:
        await workflow.wait_condition(self._should_continue_as_new)
        # Polls are turned away from now on, so the handlers in flight can finish even under load.
        self._closing = True
        await workflow.wait_condition(workflow.all_handlers_finished)
        self._forget_idle_agents()
        workflow.continue_as_new(self._state.model_copy(update={"runs": self._state.runs + 1}))

    @workflow.update
    def enqueue(self, input: SubmitInput) -> None:
        """The submit activity's update-with-start: refused (by the validator) while the queue is full."""
        self._submit(input.queued)

    @enqueue.validator
    def _queue_has_room(self, input: SubmitInput) -> None:
        if self._closing:  # the queue moves to the next run: submit again there
            raise ApplicationError("the pool is continuing as new; submit again", type="PoolQueueFull")
        refusal = self._queue_refusal(input.queued)
        if refusal:
            raise ApplicationError(refusal, type="PoolQueueFull")

    @workflow.signal
    def submit(self, input: SubmitInput) -> None:
        """Submission as a signal (conductors before `enqueue`); kept so their histories replay."""
        self._submit(input.queued)

    def _submit(self, queued: QueuedTask) -> None:
        task_id = queued.task.task_id
        # Idempotent: the activity's retry, or a submit of an attempt already claimed, changes nothing.
        if self._already_has(queued):
            return
        self._state.queue = [q for q in self._state.queue if q.task.task_id != task_id]
        self._state.queue.append(queued.model_copy(update={"enqueued_at": workflow.now()}))
        self._messages += 1

    def _already_has(self, queued: QueuedTask) -> bool:
        task_id = queued.task.task_id
        return self._state.handed_out.get(task_id, 0) >= queued.attempt or any(
            q.task.task_id == task_id and q.attempt >= queued.attempt for q in self._state.queue
        )

    def _queue_refusal(self, queued: QueuedTask) -> str | None:
        if self._already_has(queued):
            return None  # a repeat changes nothing: never refused
        queue_bytes = sum(len(q.task.script) for q in self._state.queue)
        if (
            len(self._state.queue) >= MAX_QUEUED_TASKS
            or queue_bytes + len(queued.task.script) > QUEUE_BYTES_LIMIT
        ):
            return (
                f"the pool queue is full ({len(self._state.queue)} tasks, {queue_bytes} script bytes; "
                f"bounds {MAX_QUEUED_TASKS} tasks, {QUEUE_BYTES_LIMIT} bytes): the task waits in its own "
                "workflow and is submitted again"
            )
        return None

    @workflow.signal
    def withdraw(self, withdrawal: Withdrawal) -> None:
        self._state.queue = [q for q in self._state.queue if q.task.task_id != withdrawal.task_id]
        self._messages += 1

    @workflow.update
    def register_agent(self, registration: AgentRegistration) -> None:
        """The REST API's registration: refused by the validator when the registry is full."""
        self._messages += 1
        # Again here: the validators of a burst of updates can all run before the first handler does.
        refusal = self._registry_refusal(registration.agent_id, self._entry(registration))
        if refusal:
            raise ApplicationError(refusal, type="RegistryFull", non_retryable=True)
        self._add_agent(registration)

    @register_agent.validator
    def _registry_has_room(self, registration: AgentRegistration) -> None:
        refusal = self._registry_refusal(registration.agent_id, self._entry(registration))
        if refusal:
            raise ApplicationError(refusal, type="RegistryFull", non_retryable=True)

    @workflow.signal
    def register(self, registration: AgentRegistration) -> None:
        """Registration as a signal (conductors before `register_agent`): bounded the same, but a signal
        cannot be refused, so an agent that does not fit is left out of the registry (and logged)."""
        self._messages += 1
        refusal = self._registry_refusal(registration.agent_id, self._entry(registration))
        if refusal:
            # One line per run, not one per signal: thousands in one activation would take longer than
            # the 2 s the SDK allows a workflow task (its deadlock detector failed the task).
            if not self._signals_left_out:
                workflow.logger.warning(
                    "agent %s not registered (and no more logged this run): %s",
                    registration.agent_id,
                    refusal,
                )
            self._signals_left_out += 1
            return
        self._add_agent(registration)

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
        if agent is None:  # registered with an earlier pool run that was reset, or before it existed
            entry = PoolAgent(capabilities=claim.capabilities, registered_at=workflow.now())
            if self._registry_refusal(claim.agent_id, entry):
                return  # claims never depend on the registry: a full one only leaves this agent out
            self._put(claim.agent_id, entry)
            agent = entry
        agent.last_claim_at = workflow.now()
        self._registry_version += 1

    # The registry: bounded in count and bytes (contracts/pool.py) ---------------------------------

    def _entry(self, registration: AgentRegistration) -> PoolAgent:
        return PoolAgent(
            instance_id=registration.instance_id,
            capabilities=registration.capabilities,
            max_concurrency=registration.max_concurrency,
            registered_at=workflow.now(),
        )

    def _add_agent(self, registration: AgentRegistration) -> None:
        entry = self._entry(registration)
        if self._over_bounds(registration.agent_id, entry, evictable=[]):
            self._forget(self._evictable())
        self._put(registration.agent_id, entry)

    def _put(self, agent_id: str, agent: PoolAgent) -> None:
        self._forget([agent_id])
        self._state.agents[agent_id] = agent
        self._registry_bytes += registry_entry_bytes(agent_id, agent)
        self._registry_version += 1

    def _forget(self, agent_ids: list[str]) -> None:
        for agent_id in agent_ids:
            agent = self._state.agents.pop(agent_id, None)
            if agent is not None:
                self._registry_bytes -= registry_entry_bytes(agent_id, agent)
                self._registry_version += 1

    def _evictable(self) -> list[str]:
        now = workflow.now()
        cached = self._evictable_cache
        if cached is None or cached[:2] != (now, self._registry_version):
            cutoff = now - AGENT_EVICTABLE_AFTER
            evictable = [i for i, a in self._state.agents.items() if _last_seen(a) < cutoff]
            cached = self._evictable_cache = (now, self._registry_version, evictable)
        return cached[2]

    def _over_bounds(self, agent_id: str, entry: PoolAgent, evictable: list[str]) -> bool:
        agents = self._state.agents
        gone = [i for i in {agent_id, *evictable} if i in agents]
        count = len(agents) - len(gone) + 1
        size = (
            self._registry_bytes
            - sum(registry_entry_bytes(i, agents[i]) for i in gone)
            + registry_entry_bytes(agent_id, entry)
        )
        return count > MAX_POOL_AGENTS or size > REGISTRY_BYTES_LIMIT

    def _registry_refusal(self, agent_id: str, entry: PoolAgent) -> str:
        """Why this entry does not fit even after forgetting silent agents; empty when it fits."""
        if not self._over_bounds(agent_id, entry, evictable=[]):
            return ""  # the common case, without a walk over the registry
        if not self._over_bounds(agent_id, entry, evictable=self._evictable()):
            return ""
        return (
            f"the pool registry is full ({len(self._state.agents)} agents, {self._registry_bytes} bytes; "
            f"limits {MAX_POOL_AGENTS} agents, {REGISTRY_BYTES_LIMIT} bytes) and no agent has been silent "
            f"for {int(AGENT_EVICTABLE_AFTER.total_seconds() // 60)} minutes; register again later"
        )

    def _remember_handed_out(self, queued: QueuedTask) -> None:
        handed_out = self._state.handed_out
        handed_out.pop(queued.task.task_id, None)  # re-insert: the dict's order is the age order
        handed_out[queued.task.task_id] = queued.attempt
        while len(handed_out) > HANDED_OUT_KEPT:
            del handed_out[next(iter(handed_out))]

    def _forget_idle_agents(self) -> None:
        cutoff = workflow.now() - AGENT_FORGOTTEN_AFTER
        self._forget([i for i, a in self._state.agents.items() if _last_seen(a) < cutoff])

    def _should_continue_as_new(self) -> bool:
        return (
            self._messages >= self._state.messages_per_run or workflow.info().is_continue_as_new_suggested()
        )


def _last_seen(agent: PoolAgent) -> datetime:
    return max(agent.registered_at, agent.last_claim_at or agent.registered_at)
