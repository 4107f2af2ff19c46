"""SQS message bodies -> contracts. One parser per shape; anything else is a poison message.

Hostile bodies are poison too, with a reason, before anything walks them: a body over SQS's 1 MiB, JSON
nested deeper than MAX_JSON_DEPTH (10,000 levels used to raise RecursionError past the poison path), and
NUL anywhere in a string (those two: conductor_worker/intake/poison.py). Field limits (key form, text
sizes, control characters) live in contracts/.
"""

import re
from typing import Any

from pydantic import ValidationError

from conductor_worker.intake import alarm_messages
from conductor_worker.intake.poison import PoisonMessage, load_json
from contracts.alarms import Alarm
from contracts.tickets import TicketMessage

# SQS's largest message; nothing larger can arrive, so a larger body is not from the queue.
MAX_BODY_BYTES = 1024 * 1024


def parse_message(body: str) -> TicketMessage | Alarm:
    if not isinstance(body, str):
        raise PoisonMessage(f"body is {type(body).__name__}, expected text")
    if len(body) > MAX_BODY_BYTES or len(body.encode(errors="replace")) > MAX_BODY_BYTES:
        raise PoisonMessage(f"body is over {MAX_BODY_BYTES} bytes")
    doc = load_json(body, "body")
    if not isinstance(doc, dict):
        raise PoisonMessage(f"body is JSON {type(doc).__name__}, expected an object")
    return _parse_document(doc)


def _parse_document(doc: dict[str, Any], unknown: str = "unknown message shape") -> TicketMessage | Alarm:
    """One JSON object, bare or unwrapped from SNS -> the parser for its shape."""
    if doc.get("Type") == "Notification":  # unwrap_sns rejects a second envelope, so this recurses once
        return _parse_document(
            alarm_messages.unwrap_sns(doc), "SNS notification: Message has an unknown shape"
        )
    if isinstance(doc.get("issue"), dict) and "webhookEvent" in doc:
        return parse_jira_issue(doc["issue"])
    if "key" in doc and isinstance(doc.get("fields"), dict):
        return parse_jira_issue(doc)
    # By source alone, so a CloudWatch event of another detail-type is rejected for that reason.
    if doc.get("source") == "aws.cloudwatch":
        return alarm_messages.parse_eventbridge_alarm(doc)
    if "AlarmName" in doc and "NewStateValue" in doc:
        return alarm_messages.parse_classic_sns_alarm(doc)
    if "AlarmName" in doc:
        raise PoisonMessage("classic SNS alarm: NewStateValue is missing")
    raise PoisonMessage(f"{unknown} (top-level keys: {', '.join(sorted(doc)[:8]) or 'none'})")


def parse_jira_issue(issue: dict[str, Any]) -> TicketMessage:
    fields = issue.get("fields")
    if not isinstance(fields, dict):
        raise PoisonMessage("Jira issue has no 'fields' object")
    for name in ("components", "labels"):
        if not isinstance(fields.get(name) or [], list):
            kind = type(fields[name]).__name__
            raise PoisonMessage(f"Jira issue {_show_key(issue)}: fields.{name} is {kind}, expected a list")
    try:
        return TicketMessage(
            source="jira",
            key=issue.get("key"),
            summary=fields.get("summary"),
            description=_description_text(fields.get("description")),
            url=_browse_url(issue),
            project=_name(fields.get("project"), "key"),
            issue_type=_name(fields.get("issuetype"), "name"),
            priority=_name(fields.get("priority"), "name"),
            components=[_name(c, "name") for c in fields.get("components") or []],
            labels=[str(label) for label in fields.get("labels") or []],
        )
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors())
        raise PoisonMessage(f"Jira issue {_show_key(issue)} is invalid: {problems}") from err


def _show_key(issue: dict[str, Any]) -> str:
    """The key as the reason shows it: a hostile key is cut, not copied whole into the log and the DLQ."""
    text = repr(issue.get("key"))
    return text if len(text) <= 40 else f"{text[:37]}..."


def _list(value: Any) -> list[Any]:
    """The description is display text: a malformed node is skipped rather than costing the ticket."""
    return value if isinstance(value, list) else []


def _name(obj: Any, attr: str) -> str:
    return str(obj.get(attr, "")) if isinstance(obj, dict) else ""


def _browse_url(issue: dict[str, Any]) -> str:
    """`https://x.atlassian.net/rest/api/3/issue/10002` -> `https://x.atlassian.net/browse/ENG-123`."""
    match = re.match(r"^(https?://[^/]+)/rest/api/", str(issue.get("self", "")))
    return f"{match.group(1)}/browse/{issue.get('key')}" if match else ""


def _description_text(description: Any) -> str:
    """Jira API v2 sends a string; v3 sends an Atlassian Document Format tree."""
    if description is None:
        return ""
    if isinstance(description, str):
        return description
    blocks: list[str] = []

    def walk(node: Any, out: list[str]) -> None:
        if isinstance(node, dict):
            if node.get("type") == "text":
                out.append(str(node.get("text", "")))
            elif node.get("type") == "hardBreak":
                out.append("\n")
            for child in _list(node.get("content")):
                walk(child, out)

    top_level = description.get("content") if isinstance(description, dict) else None
    for block in _list(top_level):
        parts: list[str] = []
        walk(block, parts)
        blocks.append("".join(parts))
    return "\n\n".join(b for b in blocks if b)
