"""Ids with business meaning: workflow ids, branch names, on-disk job directory names."""

import re

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def ticket_workflow_id(source: str, key: str) -> str:
    """`ticket/jira/ENG-123`: one workflow per ticket, so a duplicate message finds the same run."""
    return f"ticket/{source}/{key}"


def ticket_job_id(source: str, key: str) -> str:
    """The agent job (child workflow) of a ticket: `job/ticket/jira/ENG-123`."""
    return f"job/{ticket_workflow_id(source, key)}"


def ticket_branch(key: str) -> str:
    """The branch an agent's work is published to; also the PR head, so a retry finds its PR."""
    return f"conductor/{key}"


def safe_name(job_id: str) -> str:
    """A job id as one file-system path component (`job/ticket/jira/ENG-1` -> `job_ticket_jira_ENG-1`)."""
    return _UNSAFE.sub("_", job_id).strip("._") or "_"
