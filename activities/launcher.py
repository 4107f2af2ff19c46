"""The launcher's activities by name and signature, whichever launcher the conductor runs: what the job
workflow calls. The local launcher (activities/launch_local.py) and the Fargate launcher
(activities/launch_fargate.py) register their own implementations under these names; these are only the
references, never registered.
"""

from temporalio import activity

from contracts.activity_io import LaunchAgentInput, LaunchAgentResult, StopAgentInput


@activity.defn(name="launch_agent")
async def launch_agent(input: LaunchAgentInput) -> LaunchAgentResult:
    """Start the attempt's sandboxed agent with its token; idempotent per attempt."""
    raise NotImplementedError("a reference: the conductor registers its launcher's launch_agent")


@activity.defn(name="stop_agent")
async def stop_agent(input: StopAgentInput) -> None:
    """Stop the attempt's agent (SIGTERM, then SIGKILL; or ECS StopTask); idempotent."""
    raise NotImplementedError("a reference: the conductor registers its launcher's stop_agent")
