"""A ticket as the conductor understands it, whatever shape it arrived in; every field bounded.

A ticket travels in Temporal payloads (the ticket workflow's input, the agent job's spec), and Temporal
refuses a payload over 2 MB with a workflow task that fails for ever; so each field has a limit here, at
the edge, and the largest possible ticket is a few hundred KB (tests/unit/test_ticket_limits.py):
- the key must have its source's form and is case-normalised first, so two spellings are one ticket (and
  one workflow): Jira's `ENG-123` (project key, dash, issue number; upper-cased, `eng-123` is `ENG-123`),
  or a GitHub issue's `owner/repo#123` (lower-cased, as GitHub names are case-insensitive); anything else
  is refused;
- the summary, names, labels and components are refused past Jira's own 255 characters;
- the description is cut to DESCRIPTION_LIMIT_BYTES of UTF-8 with a marker saying so; the whole text
  (`whole_description`, never in a payload) is kept by the intake in the conductor's blob store and the
  ticket carries its reference (`description_blob`), so the agent's prompt still gets all of it
  (stores/blob_store.py, activities/task_files.py);
- control characters are dropped (the summary becomes one line); NUL is refused earlier, in
  conductor_worker/intake/messages.py, with the rest of the hostile-JSON checks.
"""

import re
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    PrivateAttr,
    StringConstraints,
    model_validator,
)

# Jira: a project key is an upper-case letter then upper-case letters, digits or underscores (Jira Cloud
# allows 10 characters, Data Center can be configured longer: 32 here); issue numbers start at 1.
PROJECT_KEY_MAX = 32
ISSUE_NUMBER_DIGITS = 10
KEY_PATTERN = rf"^[A-Z][A-Z0-9_]{{0,{PROJECT_KEY_MAX - 1}}}-[1-9][0-9]{{0,{ISSUE_NUMBER_DIGITS - 1}}}$"
KEY_MAX_LENGTH = PROJECT_KEY_MAX + 1 + ISSUE_NUMBER_DIGITS
# GitHub: an owner (user or organisation) has at most 39 characters, a repository name 100.
GITHUB_KEY_PATTERN = (
    rf"^[a-z0-9][a-z0-9-]{{0,38}}/[a-z0-9._-]{{1,100}}#[1-9][0-9]{{0,{ISSUE_NUMBER_DIGITS - 1}}}$"
)
GITHUB_KEY_MAX_LENGTH = 39 + 1 + 100 + 1 + ISSUE_NUMBER_DIGITS
# Jira's own limit for a summary and for names (project, issue type, priority, component, label).
TEXT_LIMIT = 255
URL_LIMIT = 2048
LIST_LIMIT = 100
DESCRIPTION_LIMIT_BYTES = 64 * 1024
TRUNCATION_MARKER = (
    "\n\n[conductor: description cut from {size} to {limit} bytes; the whole text is on the ticket]"
)

_SOURCE_NAMES = {"jira": "Jira", "github": "GitHub"}
# C0 and C1 control characters and DEL; tab and newline are kept where text may have lines.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_CONTROL_AND_BREAKS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def normalise_key(source: str, key: str) -> str:
    """`eng-123 ` -> `ENG-123`, `Acme/App#7` -> `acme/app#7`; the source's pattern then decides."""
    return key.strip().lower() if source == "github" else key.strip().upper()


def one_line(value: object) -> object:
    """Control characters and line breaks become spaces: a summary is a commit subject and a PR title."""
    return _CONTROL_AND_BREAKS.sub(" ", value).strip() if isinstance(value, str) else value


def without_controls(value: object) -> object:
    return _CONTROL.sub("", value.replace("\r\n", "\n")) if isinstance(value, str) else value


def bounded_description(text: str) -> str:
    """At most DESCRIPTION_LIMIT_BYTES of UTF-8: cut, with a marker, never mid-character. Idempotent."""
    size = len(text.encode())
    if size <= DESCRIPTION_LIMIT_BYTES:
        return text
    marker = TRUNCATION_MARKER.format(size=size, limit=DESCRIPTION_LIMIT_BYTES)
    keep = DESCRIPTION_LIMIT_BYTES - len(marker.encode())
    return text.encode()[:keep].decode(errors="ignore") + marker


# Constraints first, then the before-validator: pydantic then says "String should have at most 255 characters".
Name = Annotated[str, StringConstraints(max_length=TEXT_LIMIT), BeforeValidator(one_line)]


class TicketMessage(BaseModel):
    """One ticket, normalized from Jira issue JSON or a Jira webhook envelope."""

    source: str = Field(default="jira", pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    key: str
    summary: Annotated[str, StringConstraints(min_length=1, max_length=TEXT_LIMIT), BeforeValidator(one_line)]
    description: Annotated[str, BeforeValidator(without_controls), AfterValidator(bounded_description)] = ""
    url: Annotated[str, StringConstraints(max_length=URL_LIMIT), BeforeValidator(one_line)] = ""
    project: Name = ""
    issue_type: Name = ""
    priority: Name = ""
    components: list[Name] = Field(default_factory=list, max_length=LIST_LIMIT)
    labels: list[Name] = Field(default_factory=list, max_length=LIST_LIMIT)
    # sha256 of the whole description in the conductor's blob store, when `description` was cut.
    description_blob: str = Field(default="", pattern=r"^([0-9a-f]{64})?$")
    # The description before the cut; only where the ticket was parsed (never serialized).
    _whole_description: str = PrivateAttr(default="")

    @model_validator(mode="wrap")
    @classmethod
    def _keep_the_whole_description(cls, data: object, handler):
        ticket = handler(data)
        raw = data.get("description") if isinstance(data, dict) else None
        ticket._whole_description = without_controls(raw) if isinstance(raw, str) else ticket.description
        return ticket

    @property
    def whole_description(self) -> str:
        return self._whole_description or self.description

    @property
    def description_was_cut(self) -> bool:
        return len(self.whole_description.encode()) > DESCRIPTION_LIMIT_BYTES

    @model_validator(mode="before")
    @classmethod
    def _key_normalised(cls, data: object) -> object:
        if isinstance(data, dict) and isinstance(data.get("key"), str):
            source = data.get("source") or "jira"
            limit = GITHUB_KEY_MAX_LENGTH if source == "github" else KEY_MAX_LENGTH
            # Checked before the pattern so a 300-character key is refused for its length, in a short reason.
            if len(data["key"]) > limit:
                raise ValueError(
                    f"a {_SOURCE_NAMES.get(source, source)} key has at most {limit} characters; "
                    f"this one has {len(data['key'])}"
                )
            data = {**data, "key": normalise_key(source, data["key"])}
        return data

    @model_validator(mode="after")
    def _key_has_its_sources_form(self) -> "TicketMessage":
        pattern, form = (
            (GITHUB_KEY_PATTERN, "owner/repo#123") if self.source == "github" else (KEY_PATTERN, "ENG-123")
        )
        if not re.fullmatch(pattern, self.key):
            raise ValueError(
                f"{self.key!r} is not a {_SOURCE_NAMES.get(self.source, self.source)} key (the form is {form})"
            )
        return self

    @property
    def github_issue(self) -> tuple[str, int] | None:
        """(`owner/repo`, issue number) of a GitHub issue's ticket, else None."""
        if self.source != "github":
            return None
        repo, _, number = self.key.partition("#")
        return repo, int(number)
