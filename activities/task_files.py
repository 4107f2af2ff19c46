"""Stage a job attempt's task files in the blob store, where any conductor's gateway (or, with S3, the agent
itself) fetches them from (stores/attempts.py)."""

import asyncio

from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from temporalio import activity

from contracts.activity_io import StageTaskFilesInput, StageTaskFilesResult
from contracts.alarms import AlarmBatch
from contracts.jobs import JobSpec, TaskFile, TaskInstructions
from stores.attempts import StagedAttempts
from stores.mailbox import JobMailbox

_ASKS = {
    "ticket": "Make the change the ticket asks for, keep the tests passing, and summarise what you did.",
    "incident": "Investigate the incident from its alarms (incident/alarms.json), make the fix or mitigation "
    "the repository needs, keep the tests passing, and summarise your findings.",
    "scheduled": "Do the recurring task described above, keep the tests passing, and summarise what you did.",
}


def prompt_for(spec: JobSpec, steering: list[dict] = (), whole_description: str | None = None) -> str:
    """The agent's task; `whole_description`, when the blob store had it, instead of the cut one."""
    work = spec.work
    lines = [f"# {work.key}: {work.summary}", ""]
    if work.url:
        lines += [f"Link: {work.url}", ""]
    description = whole_description if whole_description is not None else work.description
    if description:
        lines += [description.strip(), ""]
    lines += [
        f"Work in the repository checked out for you (base branch `{spec.route.base_branch}`).",
        _ASKS[work.kind],
    ]
    if steering:
        lines += ["", "## Instructions from the operators (in order; later ones win)", ""]
        lines += [f"{entry['seq']}. {entry['text']} (from {entry['by']})" for entry in steering]
    return "\n".join(lines) + "\n"


def task_files_for(
    spec: JobSpec, steering: list[dict] = (), whole_description: str | None = None
) -> list[TaskFile]:
    instructions = TaskInstructions(
        job_id=spec.job_id,
        ticket_key=spec.work.key,
        repo_url=spec.route.repo_url,
        base_branch=spec.route.base_branch,
        branch=spec.branch,
        commit_message=f"{spec.work.key}: {spec.work.summary}"[:200],
    )
    files = [
        TaskFile(path="job.json", content=instructions.model_dump_json(indent=2)),
        TaskFile(path=instructions.prompt_file, content=prompt_for(spec, steering, whole_description)),
    ]
    if spec.alarms:
        alarms = AlarmBatch(alarms=spec.alarms).model_dump_json(indent=2)
        files.append(TaskFile(path="incident/alarms.json", content=alarms))
    return files


class TaskFileStager:
    def __init__(self, attempts: StagedAttempts, mailbox: JobMailbox) -> None:
        self._attempts = attempts
        self._mailbox = mailbox

    @activity.defn(name="stage_task_files")
    async def stage_task_files(self, input: StageTaskFilesInput) -> StageTaskFilesResult:
        spec = input.spec
        # Instructions sent with `steer` to an earlier attempt (or while queued) go into this one's prompt.
        steering = await asyncio.to_thread(self._mailbox.steering, spec.job_id)
        whole = await asyncio.to_thread(self._whole_description, spec)
        staged = await asyncio.to_thread(
            self._attempts.stage,
            spec.job_id,
            input.attempt,
            task_files_for(spec, steering, whole),
            # For the model gateway, which holds the agent's requests once the attempt spent this much.
            token_budget=spec.policy.token_budget if spec.policy else 0,
            cost_budget_usd=float(spec.policy.cost_budget_usd) if spec.policy else 0.0,
            # This activity's span, when the conductor traces: the agent's steps become its children.
            traceparent=_current_traceparent(),
        )
        return StageTaskFilesResult(files=[staged_file.path for staged_file in staged.files])

    def _whole_description(self, spec: JobSpec) -> str | None:
        blob = spec.work.description_blob
        if not blob:
            return None
        text = self._attempts.blobs.get_text(blob)
        if text is None:
            # The cut description (with its marker) still makes a prompt; say why it is not the whole one.
            activity.logger.warning(
                "job %s: description blob %s is not in the %s blob store; the prompt has the cut description",
                spec.job_id,
                blob,
                self._attempts.blobs.name,
            )
        return text


def _current_traceparent() -> str:
    """The W3C `traceparent` of the span this runs in (the tracing interceptor's activity span); empty when
    nothing traces."""
    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier.get("traceparent", "")
