"""Stand-ins for the launcher and publishers that record what would have happened.

`conductor simulate` and the workflow tests register these under the real activity names, so the real
workflows make their real decisions while no agent starts and nothing is pushed.
"""

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from temporalio import activity

from contracts.activity_io import (
    AwaitAgentInput,
    LaunchAgentInput,
    LaunchAgentResult,
    PublishInput,
    PublishResult,
    StageTaskFilesInput,
    StageTaskFilesResult,
    StopAgentInput,
)
from contracts.jobs import AgentResult, AgentStatus, FailureClass, JobSpec


@dataclass
class RecordedLaunch:
    job_id: str
    attempt: int
    # The (possibly simulated) time Temporal scheduled the launch.
    at: datetime
    spec: JobSpec | None = None


@dataclass
class Recorder:
    """Launches, staged specs and publishes; `outcome(job_id)` decides each agent's result."""

    outcome: Callable[[str], AgentStatus] = lambda job_id: AgentStatus.SUCCEEDED
    # When set, every agent "runs" until `release()`: a live job that later alarms can reach.
    hold_agents: bool = False
    launches: list[RecordedLaunch] = field(default_factory=list)
    staged: dict[str, JobSpec] = field(default_factory=dict)
    published: list[str] = field(default_factory=list)

    _released: asyncio.Event = field(default_factory=asyncio.Event)

    def release(self) -> None:
        self._released.set()

    def activities(self) -> list[Callable]:
        return [
            self.stage_task_files,
            self.launch_agent,
            self.await_agent_result,
            self.stop_agent,
            self.publish,
            self.publish_github,
        ]

    @activity.defn(name="stage_task_files")
    async def stage_task_files(self, input: StageTaskFilesInput) -> StageTaskFilesResult:
        self.staged[input.spec.job_id] = input.spec
        return StageTaskFilesResult(files=["job.json", "prompt.md"])

    @activity.defn(name="launch_agent")
    async def launch_agent(self, input: LaunchAgentInput) -> LaunchAgentResult:
        at = activity.info().current_attempt_scheduled_time
        self.launches.append(RecordedLaunch(input.job_id, input.attempt, at, self.staged.get(input.job_id)))
        return LaunchAgentResult(agent_id=f"recorded:{len(self.launches)}", launcher="recorder")

    @activity.defn(name="await_agent_result")
    async def await_agent_result(self, input: AwaitAgentInput) -> AgentResult:
        while self.hold_agents and not self._released.is_set():
            activity.heartbeat()
            try:
                await asyncio.wait_for(self._released.wait(), timeout=1)
            except TimeoutError:
                pass
        status = self.outcome(input.job_id)
        failed = status != AgentStatus.SUCCEEDED
        return AgentResult(
            status=status,
            exit_code=1 if failed else 0,
            summary="recorded failure" if failed else "recorded",
            failure_class=FailureClass.SCRIPT if failed else FailureClass.NONE,
            commit_sha="0" * 40,
        )

    @activity.defn(name="stop_agent")
    async def stop_agent(self, input: StopAgentInput) -> None:
        return None

    @activity.defn(name="publish_local")
    async def publish(self, input: PublishInput) -> PublishResult:
        self.published.append(input.spec.job_id)
        return PublishResult(branch=input.spec.branch, commit_sha="0" * 40)

    @activity.defn(name="publish_github")
    async def publish_github(self, input: PublishInput) -> PublishResult:
        return await self.publish(input)
