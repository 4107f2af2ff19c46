"""The Web UI's "current details" of a job: where it is, in a few lines of markdown. Pure function."""

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from contracts.jobs import JobSpec, JobState, JobStatus


def details_markdown(status: JobStatus, spec: JobSpec | None) -> str:
    lines = [f"**{status.state}** (attempt {status.attempt})"]
    if spec is not None:
        lines.append(f"{spec.work.kind} `{spec.work.key}`: {spec.work.summary}")
        if spec.route is not None:
            lines.append(f"repository `{spec.route.name or spec.route.repo_url}`, branch `{spec.branch}`")
    if status.state == JobState.QUEUED and status.claim_workflow_id:
        lines.append(f"waiting for `{status.claim_workflow_id}`")
    if status.agent_id:
        lines.append(f"agent `{status.agent_id}`")
    usage = status.progress.model_usage if status.progress else None
    if usage is not None:
        lines.append(f"model usage: {usage.render()}")
    if status.dossier_count:
        lines.append(f"{status.dossier_count} alarm(s) in the dossier")
    if status.pr_url:
        lines.append(f"pull request: {status.pr_url}")
    if status.reason:
        lines.append(f"reason: {status.reason}")
    return "\n\n".join(lines)
