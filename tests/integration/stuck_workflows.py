"""A workflow made to fail its task, for `conductor doctor` and the task-failure interceptor (kept apart
from the test module, which the workflow sandbox would otherwise import)."""

from temporalio import workflow


@workflow.defn(name="BrokenSignalWorkflow")
class BrokenSignalWorkflow:
    """Its `poke` signal raises a plain ValueError: the workflow task fails, and fails again on every retry."""

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: False)

    @workflow.signal
    def poke(self) -> None:
        raise ValueError("poked a broken workflow")
