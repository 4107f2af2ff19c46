"""A ticket as the conductor understands it, whatever shape it arrived in; every field bounded.

A ticket travels in Temporal payloads (the ticket workflow's input, the agent job's spec), and Temporal
refuses a payload over 2 MB with a workflow task that fails for ever; so each field has a limit here, at
the edge, and the largest possible ticket is a few hundred KB (tests/unit/test_ticket_limits.py):
- the key must have Jira's form (`ENG-123`: project key, dash, issue number) and is upper-cased first, so
  `eng-123` is the same ticket (and the same workflow) as `ENG-123`; anything else is refused;
- the summary, names, labels and components are refused past Jira's own 255 characters;
- the description is cut to DESCRIPTION_LIMIT_BYTES of UTF-8 with a marker saying so (the agent still
  gets the job; the whole text stays on the ticket);
- control characters are dropped (the summary becomes one line); NUL is refused earlier, in
  conductor_worker/messages.py, with the rest of the hostile-JSON checks.
"""

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, Field, StringConstraints, field_validator

# Jira: a project key is an upper-case letter then upper-case letters, digits or underscores (Jira Cloud
# allows 10 characters, Data Center can be configured longer: 32 here); issue numbers start at 1.
PROJECT_KEY_MAX = 32
ISSUE_NUMBER_DIGITS = 10
KEY_PATTERN = rf"^[A-Z][A-Z0-9_]{{0,{PROJECT_KEY_MAX - 1}}}-[1-9][0-9]{{0,{ISSUE_NUMBER_DIGITS - 1}}}$"
KEY_MAX_LENGTH = PROJECT_KEY_MAX + 1 + ISSUE_NUMBER_DIGITS
# Jira's own limit for a summary and for names (project, issue type, priority, component, label).
TEXT_LIMIT = 255
URL_LIMIT = 2048
LIST_LIMIT = 100
DESCRIPTION_LIMIT_BYTES = 64 * 1024
TRUNCATION_MARKER = (
    "\n\n[conductor: description cut from {size} to {limit} bytes; the whole text is on the ticket]"
)

# C0 and C1 control characters and DEL; tab and newline are kept where text may have lines.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_CONTROL_AND_BREAKS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def normalise_key(value: object) -> object:
    """`eng-123 ` -> `ENG-123`; the pattern then decides."""
    return value.strip().upper() if isinstance(value, str) else value


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
    key: Annotated[
        str, StringConstraints(max_length=KEY_MAX_LENGTH, pattern=KEY_PATTERN), BeforeValidator(normalise_key)
    ]
    summary: Annotated[str, StringConstraints(min_length=1, max_length=TEXT_LIMIT), BeforeValidator(one_line)]
    description: Annotated[str, BeforeValidator(without_controls), AfterValidator(bounded_description)] = ""
    url: Annotated[str, StringConstraints(max_length=URL_LIMIT), BeforeValidator(one_line)] = ""
    project: Name = ""
    issue_type: Name = ""
    priority: Name = ""
    components: list[Name] = Field(default_factory=list, max_length=LIST_LIMIT)
    labels: list[Name] = Field(default_factory=list, max_length=LIST_LIMIT)

    @field_validator("key", mode="before")
    @classmethod
    def _key_is_short_enough_to_read(cls, value: object) -> object:
        # Checked before the pattern so a 300-character key is refused for its length, in a short reason.
        if isinstance(value, str) and len(value) > KEY_MAX_LENGTH:
            raise ValueError(f"a Jira key has at most {KEY_MAX_LENGTH} characters; this one has {len(value)}")
        return value
