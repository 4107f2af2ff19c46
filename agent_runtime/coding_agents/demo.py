"""The deterministic built-in `demo` coding agent: the offline default, no model, no CLI."""

from pathlib import Path

from agent_runtime.coding_agents.base import CodingAgentOutcome
from contracts.task_paths import check_relative_path


def run_demo_agent(repo_dir: Path, ticket_key: str, commit_message: str, prompt: str) -> CodingAgentOutcome:
    """Make a small, real, repeatable change: a changelog line and the prompt under docs/."""
    key = ticket_key
    # The key names a file: a GitHub issue's `acme/app#7` becomes `acme-app-7`.
    name = key.replace("/", "-").replace("#", "-")
    ticket_doc = Path(repo_dir, check_relative_path(f"docs/tickets/{name}.md"))
    entry = f"- {key}: {_summary_line(key, commit_message)}"

    changelog = repo_dir / "CHANGELOG.md"
    text = changelog.read_text(encoding="utf-8") if changelog.exists() else "# Changelog\n"
    changelog.write_text(_with_unreleased_entry(text, entry), encoding="utf-8")

    ticket_doc.parent.mkdir(parents=True, exist_ok=True)
    ticket_doc.write_text(prompt if prompt.endswith("\n") else prompt + "\n", encoding="utf-8")
    return CodingAgentOutcome(
        exit_code=0,
        stdout_tail=f"updated CHANGELOG.md and docs/tickets/{name}.md\n",
        summary=f"demo agent: changelog entry and docs/tickets/{name}.md for {key}",
    )


def _summary_line(key: str, commit_message: str) -> str:
    # job.json has no separate summary: the commit message's first line is "<KEY>: <summary>".
    first = (commit_message.strip().splitlines() or [""])[0].strip()
    for sep in (":", " "):
        prefix = key + sep
        if first.startswith(prefix):
            return first[len(prefix) :].strip()
    return first


def _with_unreleased_entry(text: str, entry: str) -> str:
    """Append `entry` at the end of the `## Unreleased` section, creating the section if needed."""
    lines = text.splitlines()
    if entry in lines:
        return text
    heads = [i for i, line in enumerate(lines) if line.strip().lower() == "## unreleased"]
    if not heads:
        lines += ["", "## Unreleased"]
        heads = [len(lines) - 1]
    head = heads[0]
    # The section ends at the next heading of its level or above; `### Added` stays inside it.
    end = next(
        (i for i in range(head + 1, len(lines)) if lines[i].startswith(("# ", "## "))),
        len(lines),
    )
    insert_at = end
    while insert_at > head + 1 and not lines[insert_at - 1].strip():
        insert_at -= 1
    new = [entry] if insert_at > head + 1 else ["", entry]
    return "\n".join(lines[:insert_at] + new + lines[insert_at:]) + "\n"
