"""Stage a job attempt's task files where the gateway serves them from."""

import asyncio
from pathlib import Path

from temporalio import activity

from contracts.activity_io import StageTaskFilesInput, StageTaskFilesResult
from contracts.alarms import AlarmBatch
from contracts.jobs import JobSpec, TaskFile, TaskInstructions
from stores.blob_store import BlobStore
from stores.job_store import JobAttemptDir, read_steering, write_atomic

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
    def __init__(self, jobs_dir: Path, blobs: BlobStore | None = None) -> None:
        self._jobs_dir = jobs_dir
        self._blobs = blobs

    @activity.defn(name="stage_task_files")
    async def stage_task_files(self, input: StageTaskFilesInput) -> StageTaskFilesResult:
        job = JobAttemptDir(self._jobs_dir, input.spec.job_id, input.attempt)
        # Instructions sent with `steer` to an earlier attempt (or while queued) go into this one's prompt.
        steering = read_steering(self._jobs_dir, input.spec.job_id)
        whole = await asyncio.to_thread(self._whole_description, input.spec)
        manifest = await asyncio.to_thread(job.stage_files, task_files_for(input.spec, steering, whole))
        # For the model gateway, which holds the agent's requests once the attempt used this many tokens.
        budget = input.spec.policy.token_budget if input.spec.policy else 0
        write_atomic(job.token_budget_path, str(budget).encode())
        cost_budget = input.spec.policy.cost_budget_usd if input.spec.policy else 0.0
        write_atomic(job.cost_budget_path, repr(float(cost_budget)).encode())
        return StageTaskFilesResult(files=[entry["path"] for entry in manifest])

    def _whole_description(self, spec: JobSpec) -> str | None:
        blob = spec.work.description_blob
        if not blob or self._blobs is None:
            return None
        text = self._blobs.get(blob)
        if text is None:
            # The cut description (with its marker) still makes a prompt; say why it is not the whole one.
            activity.logger.warning(
                "job %s: description blob %s is not in %s; the prompt has the cut description",
                spec.job_id,
                blob,
                self._blobs.root,
            )
        return text
