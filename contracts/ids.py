"""Ids with business meaning: workflow ids, branch names, on-disk job directory names."""

import re

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def ticket_workflow_id(source: str, key: str) -> str:
    """`ticket/jira/ENG-123`, `ticket/github/acme/app/7` (key `acme/app#7`): one workflow per ticket, so a
    duplicate message finds the same run."""
    return f"ticket/{source}/{key.replace('#', '/')}"


def ticket_job_id(source: str, key: str) -> str:
    """The agent job (child workflow) of a ticket: `job/ticket/jira/ENG-123`."""
    return f"job/{ticket_workflow_id(source, key)}"


def ticket_branch(key: str) -> str:
    """The branch an agent's work is published to; also the PR head, so a retry finds its PR.
    (`conductor/ENG-123`; a GitHub issue `acme/app#7`: `conductor/acme/app-7`.)"""
    return f"conductor/{key.replace('#', '-')}"


def safe_name(job_id: str) -> str:
    """A job id as one file-system path component (`job/ticket/jira/ENG-1` -> `job_ticket_jira_ENG-1`)."""
    return _UNSAFE.sub("_", job_id).strip("._") or "_"


def account_workflow_id(account: str) -> str:
    """The per-account workflow that receives every alarm of the account and owns its chains."""
    return f"alarms/{account}"


def _stamp(chain_id: str) -> str:
    # `incident/204772699175/2026-05-12T20:00:00Z` -> `204772699175-20260512T200000Z`
    _, account, opened = chain_id.split("/", 2)
    return f"{account}-{opened.replace('-', '').replace(':', '').replace('/', '-')}"


def incident_job_id(chain_id: str, job_number: int) -> str:
    """A chain's first job is the chain id itself; a respawn after a failure gets `/job-<n>`."""
    return chain_id if job_number == 1 else f"{chain_id}/job-{job_number}"


def incident_key(chain_id: str) -> str:
    return f"incident-{_stamp(chain_id)}"


def incident_branch(chain_id: str, job_number: int) -> str:
    """Git refs may not hold `:`; the branch carries the chain's account and opening time instead."""
    suffix = "" if job_number == 1 else f"-{job_number}"
    return f"conductor/{incident_key(chain_id)}{suffix}"


def job_kind(job_id: str) -> str:
    """The kind of job an id names (ticket, incident, scheduled), for metrics that see only the id."""
    if job_id.startswith("job/ticket/"):
        return "ticket"
    if job_id.startswith("job/schedule/"):
        return "scheduled"
    return "incident" if job_id.startswith("incident/") else "other"
