"""A job's live status comment, from the workflow's side (deterministic code; the I/O is the activity
activities/status_comment.py).

Edits go out in order, one at a time, from a background task: the job never waits on Jira or GitHub
while it works, and an edit that fails after its few tries is logged and dropped (the next one rewrites
the whole comment anyway). Only at its very end does the job wait, briefly, for the last edit to land.
"""

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.status_comment import StatusComments
    from contracts.jobs import AgentProgress, AgentResult, JobSpec
    from contracts.status import REPORT_TEXT_LIMIT, StatusCommentInput

STATUS_COMMENT_PATCH = "job-status-comment"
# Per try; then a 4xx is final (the activity says so) and anything else gets two more tries.
EDIT_TIMEOUT = timedelta(seconds=20)
EDIT_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=5), maximum_attempts=3
)
# Edits waiting behind a slow one; past it the oldest are dropped (each edit rewrites the whole comment).
PENDING_LIMIT = 4
# How long a finished job waits for its last edit before it closes anyway.
FLUSH_TIMEOUT = timedelta(seconds=30)
# While it runs, the agent's latest event is shown at most this often.
EVENT_EVERY = timedelta(seconds=30)


class JobStatusComment:
    def __init__(self) -> None:
        self.enabled = False
        # Where the edits that carried an ending or a pause note landed (the job's `status.notes`).
        self.notes: list[str] = []
        self._seq = 0
        self._pending: list[StatusCommentInput] = []
        self._sender: asyncio.Task | None = None
        self._event = ""
        self._event_shown_at = None

    def start(self, spec: JobSpec) -> None:
        """Decided once, at the start of the run; runs recorded before status comments never ask."""
        self.enabled = bool(spec.status_comments and spec.ticket) and workflow.patched(STATUS_COMMENT_PATCH)

    def post(self, spec: JobSpec, phase: str, attempt: int, **fields) -> None:
        if not self.enabled:
            return
        self._seq += 1
        if phase == "RUNNING":
            fields.setdefault("latest_event", self._event)
            self._event_shown_at = workflow.now()
        self._pending.append(
            StatusCommentInput(
                job_id=spec.job_id,
                run_id=workflow.info().run_id,
                seq=self._seq,
                source=spec.ticket.source,
                key=spec.ticket.key,
                summary=spec.ticket.summary,
                phase=phase,
                attempt=attempt,
                **fields,
            )
        )
        del self._pending[:-PENDING_LIMIT]
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send())

    def progress(self, spec: JobSpec, attempt: int, progress: AgentProgress) -> None:
        """The running agent's latest event (or log line), shown at most every EVENT_EVERY."""
        if not self.enabled:
            return
        latest = progress.events[-1].render() if progress.events else ""
        latest = latest or (progress.last_lines[-1] if progress.last_lines else "")
        if not latest or latest == self._event:
            return
        self._event = latest[:1_000]
        if self._event_shown_at is None or workflow.now() - self._event_shown_at >= EVENT_EVERY:
            self.post(spec, "RUNNING", attempt)

    def idle(self) -> bool:
        return not self._pending and (self._sender is None or self._sender.done())

    async def flush(self) -> None:
        if not self.enabled or self.idle():
            return
        try:
            await workflow.wait_condition(self.idle, timeout=FLUSH_TIMEOUT)
        except TimeoutError:
            workflow.logger.warning("status comment: the last edit did not land within %s", FLUSH_TIMEOUT)

    async def _send(self) -> None:
        while self._pending:
            edit = self._pending.pop(0)
            try:
                result = await workflow.execute_activity_method(
                    StatusComments.post_status_comment,
                    edit,
                    start_to_close_timeout=EDIT_TIMEOUT,
                    retry_policy=EDIT_RETRY,
                )
            except ActivityError as err:
                workflow.logger.warning("status comment %s not edited: %s", edit.phase, err.cause or err)
                continue
            if edit.note is not None and result.left_at and result.left_at not in self.notes:
                self.notes.append(result.left_at)


def agent_report(result: AgentResult | None) -> str:
    """The agent's final report for an incident's issue: its summary, and its output's tail on failure."""
    if result is None:
        return ""
    parts = [result.summary]
    if result.status != "SUCCEEDED":
        parts += [result.stderr_tail[-2_000:], result.stdout_tail[-2_000:]]
    return "\n\n".join(part for part in parts if part.strip())[-REPORT_TEXT_LIMIT:]
