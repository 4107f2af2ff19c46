"""A ticket as the conductor understands it, whatever shape it arrived in."""

from pydantic import BaseModel, Field


class TicketMessage(BaseModel):
    """One ticket, normalized from Jira issue JSON or a Jira webhook envelope."""

    source: str = "jira"
    key: str = Field(min_length=1, pattern=r"^[A-Za-z][A-Za-z0-9_]*-[0-9]+$")
    summary: str
    description: str = ""
    url: str = ""
    project: str = ""
    issue_type: str = ""
    priority: str = ""
    components: list[str] = Field(default_factory=list)
    labels: list[str] = Field(default_factory=list)
