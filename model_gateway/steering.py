"""Operator instructions (`steer`), and later alarms of an incident job's chain, put in front of the running
coding agent by the model gateway.

The gateway forwards every model turn of the agent, so it adds the job's instructions to each request's
conversation (all of them, every turn: the CLI resends its conversation and would drop what it never
saw), as the newest user input. Which instruction a request of the attempt carried goes to the job as a
`steering_delivered` signal (model_gateway/delivery.py), which the `steer` update waits for.
"""

import json
from typing import Any

from stores.mailbox import JobMailbox


def steering_text(entries: list[dict], alarms: list[dict] = ()) -> str:
    lines = []
    if entries:
        lines += [
            "Instructions from the operator of this job, newest last; they override earlier instructions:"
        ]
        lines += [f"{entry['seq']}. {entry['text']} (from {entry['by']})" for entry in entries]
    if alarms:
        lines += ["" if lines else None, "Alarms of this incident that came after you started, oldest first:"]
        lines += [f"- {alarm['text']}" for alarm in alarms]
    return "\n".join(line for line in lines if line is not None)


def with_steering(provider: str, body: dict[str, Any], text: str) -> dict[str, Any]:
    """The request body with `text` as the conversation's newest user input."""
    if provider == "openai":
        items = body.get("input", [])
        if isinstance(items, str):
            items = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": items}]}]
        note = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
        return {**body, "input": [*items, note]}
    messages = list(body.get("messages", []))
    block = {"type": "text", "text": text}
    if messages and messages[-1].get("role") == "user":
        content = messages[-1].get("content", [])
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        messages[-1] = {**messages[-1], "content": [*content, block]}
    else:
        messages.append({"role": "user", "content": [block]})
    return {**body, "messages": messages}


def steer_request(provider: str, job_id: str, mailbox: JobMailbox, body: bytes) -> tuple[bytes, int]:
    """`body` with the job's instructions in it, and the highest instruction it carries (0: none); the
    body unchanged when there are none."""
    entries, alarms = mailbox.steering(job_id), mailbox.later_alarms(job_id)
    if not entries and not alarms:
        return body, 0
    try:
        parsed = json.loads(body)
    except ValueError:
        return body, 0  # not JSON: the provider will say so
    if not isinstance(parsed, dict):
        return body, 0
    steered = json.dumps(with_steering(provider, parsed, steering_text(entries, alarms))).encode()
    return steered, max((entry["seq"] for entry in entries), default=0)
