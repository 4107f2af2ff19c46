"""What a coding agent did, in one small shape whatever its CLI: read from the CLI's JSON event stream by
its adapter (agent_runtime/coding_agents/), sent with the job's log as a marked line, shown by `status`
and `conductor logs JOB --events`."""

from typing import Literal

from pydantic import BaseModel, Field, ValidationError

# A log line that carries an event starts with this; the rest is the event as JSON.
EVENT_PREFIX = "conductor-event: "


class AgentEvent(BaseModel):
    kind: Literal["message", "command", "file_change", "error"]
    summary: str = Field(max_length=500)
    files: list[str] = Field(default_factory=list)
    # Commands only, once they finished.
    exit_code: int | None = None

    def log_line(self) -> str:
        return EVENT_PREFIX + self.model_dump_json(exclude_defaults=True)

    def render(self) -> str:
        files = f" [{', '.join(self.files)}]" if self.files else ""
        code = f" (exit {self.exit_code})" if self.exit_code is not None else ""
        return f"{self.kind}: {self.summary}{files}{code}"


def event_from_log_text(text: str) -> AgentEvent | None:
    if not text.startswith(EVENT_PREFIX):
        return None
    try:
        return AgentEvent.model_validate_json(text[len(EVENT_PREFIX) :])
    except ValidationError:
        return None


def short(text: str, limit: int = 500) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
