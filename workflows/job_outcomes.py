"""How an agent job can end other than SUCCEEDED, as exceptions the job workflow raises and catches."""

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    from contracts.jobs import AgentResult, JobState


class AgentLost(Exception):
    """The agent crashed, fell silent or never handshook: the job may relaunch it."""


class JobEnded(Exception):
    """The job reached a terminal state other than SUCCEEDED; carries what the note and failure need."""

    def __init__(
        self, state: JobState, reason: str, result: AgentResult | None = None, by_temporal: bool = False
    ) -> None:
        super().__init__(reason)
        self.state = state
        self.reason = reason
        self.result = result
        self.by_temporal = by_temporal

    def error(self) -> ApplicationError:
        """The workflow's failure: a reason a person can read, typed by the state for visibility."""
        return ApplicationError(f"{self.state}: {self.reason}", type=self.state.value, non_retryable=True)


TERMINAL = {
    JobState.SUCCEEDED,
    JobState.FAILED,
    JobState.CANCELLED,
    JobState.CRASHED,
    JobState.TIMED_OUT,
    JobState.NO_CHANGES,
}
RETRYABLE = TERMINAL - {JobState.SUCCEEDED}


def readable_failure(err: ActivityError | ChildWorkflowError) -> BaseException:
    """Surface the root reason (e.g. "no route for ticket ENG-9 ...") as the calling workflow's failure."""
    cause = err.cause
    if isinstance(cause, ApplicationError):
        return ApplicationError(cause.message, type=cause.type, non_retryable=True)
    return err
