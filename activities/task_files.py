"""Stage a job attempt's task files where the gateway serves them from."""

import asyncio
from pathlib import Path

from temporalio import activity

from conductor_worker.job_store import JobAttemptDir
from contracts.activity_io import StageTaskFilesInput, StageTaskFilesResult
from contracts.jobs import JobSpec, TaskFile, TaskInstructions


def prompt_for(spec: JobSpec) -> str:
    ticket = spec.ticket
    lines = [f"# {ticket.key}: {ticket.summary}", ""]
    if ticket.url:
        lines += [f"Ticket: {ticket.url}", ""]
    if ticket.description:
        lines += [ticket.description.strip(), ""]
    lines += [
        f"Work in the repository checked out for you (base branch `{spec.route.base_branch}`).",
        "Make the change the ticket asks for, keep the tests passing, and summarise what you did.",
    ]
    return "\n".join(lines) + "\n"


def task_files_for(spec: JobSpec) -> list[TaskFile]:
    instructions = TaskInstructions(
        job_id=spec.job_id,
        ticket_key=spec.ticket.key,
        repo_url=spec.route.repo_url,
        base_branch=spec.route.base_branch,
        branch=spec.branch,
        commit_message=f"{spec.ticket.key}: {spec.ticket.summary}"[:200],
    )
    return [
        TaskFile(path="job.json", content=instructions.model_dump_json(indent=2)),
        TaskFile(path=instructions.prompt_file, content=prompt_for(spec)),
    ]


class TaskFileStager:
    def __init__(self, jobs_dir: Path) -> None:
        self._jobs_dir = jobs_dir

    @activity.defn(name="stage_task_files")
    async def stage_task_files(self, input: StageTaskFilesInput) -> StageTaskFilesResult:
        job = JobAttemptDir(self._jobs_dir, input.spec.job_id, input.attempt)
        manifest = await asyncio.to_thread(job.stage_files, task_files_for(input.spec))
        return StageTaskFilesResult(files=[entry["path"] for entry in manifest])
