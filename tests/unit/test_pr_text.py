from activities.pr_text import BODY_LIMIT, TITLE_LIMIT, pr_body, pr_title
from contracts.tickets import TicketMessage

JOB_ID = "job/ticket/jira/ENG-123"


def ticket(**overrides) -> TicketMessage:
    fields = {
        "key": "ENG-123",
        "summary": "Fix the login page",
        "url": "https://jira.example.com/browse/ENG-123",
    }
    return TicketMessage(**{**fields, **overrides})


def test_title_is_key_and_summary():
    assert pr_title(ticket()) == "ENG-123: Fix the login page"


def test_title_is_one_line():
    assert pr_title(ticket(summary="Fix\nthe   login\tpage")) == "ENG-123: Fix the login page"


def test_long_title_is_cut_to_github_limit():
    title = pr_title(ticket(summary="x" * 255))  # the longest summary a ticket may have
    assert len(title) == TITLE_LIMIT
    assert title.startswith("ENG-123: xxx")
    assert title.endswith("…")


def test_body_links_ticket_and_names_job():
    body = pr_body(ticket(), JOB_ID, "Changed the form validation.")
    assert "[ENG-123](https://jira.example.com/browse/ENG-123)" in body
    assert "Changed the form validation." in body
    assert body.rstrip().endswith(f"Opened by Agent Conductor for job {JOB_ID}")


def test_body_without_ticket_url_names_the_key():
    body = pr_body(ticket(url=""), JOB_ID, "done")
    assert "Ticket: ENG-123" in body
    assert "](" not in body


def test_body_with_empty_summary_says_so():
    assert "no summary" in pr_body(ticket(), JOB_ID, "  ")


def test_short_body_is_not_marked_truncated():
    assert "truncated" not in pr_body(ticket(), JOB_ID, "x" * 1000)


def test_long_body_is_cut_to_github_limit_with_marker_and_footer():
    summary = "§" * (BODY_LIMIT * 2)
    body = pr_body(ticket(), JOB_ID, summary)
    assert len(body) <= BODY_LIMIT
    assert "truncated by Agent Conductor" in body
    assert body.startswith("Ticket: [ENG-123]")
    assert body.rstrip().endswith(f"Opened by Agent Conductor for job {JOB_ID}")
    kept = body.count("§")
    assert f"{len(summary) - kept} characters omitted" in body


def test_body_just_at_the_limit_is_kept_whole():
    fixed = len(pr_body(ticket(), JOB_ID, "x")) - 1
    body = pr_body(ticket(), JOB_ID, "y" * (BODY_LIMIT - fixed))
    assert len(body) == BODY_LIMIT
    assert "truncated" not in body
