"""GitHub `issues` webhook events -> what the conductor does about them.

A label (`CONDUCTOR_GITHUB_TRIGGER_LABEL`, `agent` by default) added to an issue makes it a ticket of its
own source: key `owner/repo#123`, workflow `ticket/github/owner/repo/123`, project `owner/repo` (routes can
match it; with no rule it goes to its own repository). The label removed, or the issue closed, cancels its
running job. Everything else is of no interest. Payload shape: GitHub's documented `issues` event.
"""

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from conductor_worker.intake.poison import PoisonMessage
from contracts.tickets import TicketMessage


@dataclass(frozen=True)
class IssueEvent:
    action: Literal["start", "cancel", "ignore"]
    ticket: TicketMessage | None = None
    # Why it is ignored, or what asked for the cancel: one line for the answer and the log.
    reason: str = ""


def issue_event(payload: dict[str, Any], trigger_label: str) -> IssueEvent:
    """Decide on one `issues` event; PoisonMessage when it is not the documented shape."""
    action = payload.get("action")
    issue, repository = payload.get("issue"), payload.get("repository")
    if not isinstance(issue, dict) or not isinstance(repository, dict):
        raise PoisonMessage("issues event without an `issue` and a `repository` object")
    if "pull_request" in issue:
        return IssueEvent("ignore", reason="the issue is a pull request")
    label = _name(payload.get("label"))
    labels = [_name(item) for item in issue.get("labels") or [] if isinstance(item, dict)]
    if action == "labeled" and label == trigger_label:
        return IssueEvent("start", _ticket(issue, repository, labels))
    if action == "unlabeled" and label == trigger_label:
        return IssueEvent("cancel", _ticket(issue, repository, labels), f"label {trigger_label!r} removed")
    if action == "closed" and trigger_label in labels:
        return IssueEvent("cancel", _ticket(issue, repository, labels), "issue closed")
    return IssueEvent("ignore", reason=f"issues.{action} is not a trigger (label {trigger_label!r})")


def _ticket(issue: dict[str, Any], repository: dict[str, Any], labels: list[str]) -> TicketMessage:
    repo = str(repository.get("full_name", ""))
    try:
        return TicketMessage(
            source="github",
            key=f"{repo}#{issue.get('number')}",
            summary=issue.get("title"),
            description=issue.get("body") or "",
            url=str(issue.get("html_url") or ""),
            project=repo,
            issue_type="issue",
            labels=labels,
        )
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors())
        raise PoisonMessage(
            f"GitHub issue {repo}#{issue.get('number')!r} is invalid: {problems}"[:500]
        ) from err


def _name(obj: Any) -> str:
    return str(obj.get("name", "")) if isinstance(obj, dict) else ""
