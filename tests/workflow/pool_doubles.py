"""A broken pool the pool property tests must catch (kept out of the test module, which imports
hypothesis and threads the workflow sandbox would refuse)."""

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from contracts.pool import PoolState
    from workflows.agent_pool import AgentPoolWorkflow


@workflow.defn(name="AgentPoolWorkflow")
class PoolHandsOutNewest(AgentPoolWorkflow):
    """Hands an agent the newest matching task instead of the oldest: FIFO per capability is broken."""

    @workflow.init
    def __init__(self, state: PoolState) -> None:
        super().__init__(state)

    @workflow.run
    async def run(self, state: PoolState) -> None:
        await super().run(state)

    def _next_for(self, capabilities: list[str]) -> int | None:
        wanted = set(capabilities)
        matching = [i for i, q in enumerate(self._state.queue) if q.task.capability in wanted]
        return matching[-1] if matching else None
