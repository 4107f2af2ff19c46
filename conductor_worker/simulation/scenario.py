"""Scenario files for `conductor simulate`: timed SQS message bodies, loaded and validated up front.

Two formats:
- YAML or JSON (`.yaml`, `.yml`, `.json`): `start`, optional inline `routes` and `fail_jobs`, and `messages`,
  each with an `at` offset from `start` and either a raw `body` or a `ticket` / `alarm` shorthand. The
  shorthand expands into a real Jira issue or EventBridge alarm event, so every message still goes
  through `parse_message` exactly as it would from SQS.
- JSONL (`.jsonl`, `.ndjson`): one SQS message body per line, as exported from a real queue, delivered in
  file order 100 ms of simulated time apart (10 messages a second). A line that is not a message the
  conductor understands is a poison message in the report, not an error in the file.
"""

import json
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from contracts.routing import RoutesConfig

# The day of the README's worked chain example; a scenario without `start` (every JSONL file) begins here.
DEFAULT_START = datetime(2026, 5, 12, 20, 0, tzinfo=UTC)
JSONL_SPACING = timedelta(milliseconds=100)
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_OFFSET_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


class ScenarioError(ValueError):
    """A scenario file that cannot be simulated; the message names the file and the line or entry."""


def _offset(value: Any) -> Any:
    """`90`, `1.5`, `"90s"`, `"15m"`, `"2h"`, `"1h30m"`, `"250ms"` -> timedelta."""
    if isinstance(value, bool):
        raise ValueError("expected seconds or a duration like 90s, 15m, 2h, 1h30m")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("must not be negative")
        return timedelta(seconds=value)
    text = str(value).strip().replace(" ", "")
    parts = _OFFSET_PART.findall(text)
    if not text or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"{value!r} is not seconds or a duration like 90s, 15m, 2h, 1h30m")
    return timedelta(seconds=sum(float(n) * _UNIT_SECONDS[u] for n, u in parts))


Offset = Annotated[timedelta, BeforeValidator(_offset)]


class TicketShorthand(BaseModel):
    """Expands into Jira issue JSON (the shape of examples/tickets/ENG-123.json, trimmed)."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*-[0-9]+$")
    summary: str = ""
    description: str = ""
    project: str = ""
    issue_type: str = "Task"
    labels: list[str] = Field(default_factory=list)
    components: list[str] = Field(default_factory=list)

    def body(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "self": f"https://simulated.atlassian.net/rest/api/3/issue/{self.key}",
            "fields": {
                "summary": self.summary or f"Simulated ticket {self.key}",
                "description": self.description,
                "project": {"key": self.project or self.key.rsplit("-", 1)[0]},
                "issuetype": {"name": self.issue_type},
                "labels": self.labels,
                "components": [{"name": name} for name in self.components],
            },
        }


class AlarmShorthand(BaseModel):
    """Expands into an EventBridge "CloudWatch Alarm State Change" event."""

    model_config = ConfigDict(extra="forbid")

    account: str = Field(pattern=r"^[0-9]{12}$")
    name: str = Field(min_length=1)
    state: Literal["ALARM", "OK", "INSUFFICIENT_DATA"] = "ALARM"
    # The alarm's own event time; defaults to when the message is delivered (start + at).
    time: AwareDatetime | None = None
    region: str = "us-east-1"
    reason: str = ""

    def body(self, delivered_at: datetime) -> dict[str, Any]:
        stamp = (self.time or delivered_at).astimezone(UTC).isoformat().replace("+00:00", "Z")
        arn = f"arn:aws:cloudwatch:{self.region}:{self.account}:alarm:{self.name}"
        return {
            "version": "0",
            "id": f"sim-{self.account}-{self.name}-{self.state}-{stamp}",
            "detail-type": "CloudWatch Alarm State Change",
            "source": "aws.cloudwatch",
            "account": self.account,
            "time": stamp,
            "region": self.region,
            "resources": [arn],
            "detail": {
                "alarmName": self.name,
                "state": {
                    "value": self.state,
                    "reason": self.reason or f"simulated {self.state}",
                    "timestamp": stamp,
                },
                "previousState": {"value": "OK" if self.state == "ALARM" else "ALARM"},
            },
        }


class ScenarioEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at: Offset
    # A raw body may be a JSON object or a string (a string is sent as is, so poison bodies can be written).
    body: dict[str, Any] | str | None = None
    ticket: TicketShorthand | None = None
    alarm: AlarmShorthand | None = None

    @model_validator(mode="after")
    def _one_payload(self) -> "ScenarioEntry":
        given = [name for name in ("body", "ticket", "alarm") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"needs exactly one of body, ticket, alarm (got {', '.join(given) or 'none'})")
        return self


class ScenarioFile(BaseModel):
    """The YAML/JSON document as written."""

    model_config = ConfigDict(extra="forbid")

    start: AwareDatetime = DEFAULT_START
    routes: RoutesConfig | None = None
    # Agent jobs whose id starts with one of these report a failed agent (the rest succeed).
    fail_jobs: list[str] = Field(default_factory=list)
    messages: list[ScenarioEntry] = Field(min_length=1)


class ScheduledMessage(BaseModel):
    # The JSONL line number, or the YAML entry's position counted from 1; the report refers to it as `#n`.
    number: int
    at: timedelta
    body: str


class Scenario(BaseModel):
    """What the simulator runs: messages in delivery order, each with its offset from `start`."""

    name: str
    start: AwareDatetime = DEFAULT_START
    routes: RoutesConfig | None = None
    fail_jobs: list[str] = Field(default_factory=list)
    messages: list[ScheduledMessage]


def load_scenario(path: Path) -> Scenario:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ScenarioError(f"{path}: cannot read: {err}") from err
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return _load_jsonl(path, text)
    if suffix in (".yaml", ".yml", ".json"):
        return _load_document(path, text)
    raise ScenarioError(
        f"{path}: unknown scenario format {suffix or '(no suffix)'}; use .yaml, .json or .jsonl"
    )


def _load_jsonl(path: Path, text: str) -> Scenario:
    lines = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not lines:
        raise ScenarioError(f"{path}: no messages (expected one SQS message body per line)")
    messages = [
        ScheduledMessage(number=n, at=i * JSONL_SPACING, body=line.strip())
        for i, (n, line) in enumerate(lines)
    ]
    return Scenario(name=path.name, messages=messages)


def _load_document(path: Path, text: str) -> Scenario:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ScenarioError(f"{path}: not valid YAML/JSON: {err}") from err
    if not isinstance(doc, dict):
        raise ScenarioError(f"{path}: expected a mapping with `messages`, got {type(doc).__name__}")
    try:
        scenario = ScenarioFile.model_validate(doc)
    except ValidationError as err:
        raise ScenarioError(f"{path}: {_problems(err)}") from err
    messages = [
        ScheduledMessage(number=i, at=entry.at, body=_body(entry, scenario.start))
        for i, entry in enumerate(scenario.messages, start=1)
    ]
    return Scenario(
        name=path.name,
        start=scenario.start,
        routes=scenario.routes,
        fail_jobs=scenario.fail_jobs,
        # Stable: entries with the same offset keep their order in the file.
        messages=sorted(messages, key=lambda m: m.at),
    )


def _body(entry: ScenarioEntry, start: datetime) -> str:
    if entry.ticket is not None:
        return json.dumps(entry.ticket.body())
    if entry.alarm is not None:
        return json.dumps(entry.alarm.body(start + entry.at))
    return entry.body if isinstance(entry.body, str) else json.dumps(entry.body, default=_yaml_scalar)


def _yaml_scalar(value: Any) -> str:
    """YAML turns an unquoted `2026-05-12T20:00:00Z` into a datetime; the body carries it as ISO text."""
    if isinstance(value, date):
        return value.isoformat().replace("+00:00", "Z")
    raise TypeError(f"{type(value).__name__} is not JSON")


def _problems(err: ValidationError) -> str:
    """`messages[3] (message #4) at: ...`: the entry as a reader counts it, and the field."""
    out = []
    for e in err.errors():
        loc = list(e["loc"])
        where = ""
        if len(loc) >= 2 and loc[0] == "messages" and isinstance(loc[1], int):
            where = f"messages[{loc[1]}] (message #{loc[1] + 1})"
            loc = loc[2:]
        head = " ".join(part for part in (where, ".".join(str(p) for p in loc)) if part)
        message = e["msg"].removeprefix("Value error, ")
        out.append(f"{head}: {message}" if head else message)
    return "; ".join(out)
