"""One line of an agent job's log, as the conductor stores it (outside workflow history)."""

from datetime import UTC, datetime

from pydantic import BaseModel, Field

AGENT_STREAM = "agent"


class LogLine(BaseModel):
    # 1, 2, 3, ... per job attempt, with no gaps: the agent numbers every line it produces.
    seq: int = Field(ge=1)
    # The DAG step that printed the line; empty for the agent's own progress lines.
    step: str = ""
    # "stdout" or "stderr" for step output, "agent" for the agent's own lines.
    stream: str = AGENT_STREAM
    text: str
    # Unix time when the agent read the line.
    ts: float = 0.0

    def render(self) -> str:
        """`12:00:01 clone stderr | Cloning into 'repo'...`, as `conductor logs` prints it."""
        at = datetime.fromtimestamp(self.ts, UTC).strftime("%H:%M:%S")
        source = f"{self.step} {self.stream}" if self.step else self.stream
        return f"{at} {source} | {self.text}"
