"""GitHub webhook deliveries as GitHub sends them: the `issues` event payload and its signature."""

import hashlib
import hmac
import json

REPO = "acme/app"


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def issues_event(action: str, number: int, label: str = "agent", labels=("agent",)) -> bytes:
    """GitHub's `issues` webhook payload (the fields the docs show; the conductor reads a few)."""
    owner, name = REPO.split("/")
    return json.dumps(
        {
            "action": action,
            "issue": {
                "url": f"https://api.github.com/repos/{REPO}/issues/{number}",
                "html_url": f"https://github.com/{REPO}/issues/{number}",
                "id": number * 10,
                "number": number,
                "title": "Greeting ignores the user's name",
                "body": "Say hello to the user by name.",
                "state": "open",
                "user": {"login": "octocat"},
                "labels": [{"id": 1, "name": n, "color": "ededed"} for n in labels],
            },
            "label": {"id": 1, "name": label, "color": "ededed"},
            "repository": {
                "id": 42,
                "name": name,
                "full_name": REPO,
                "owner": {"login": owner},
                "html_url": f"https://github.com/{REPO}",
            },
            "sender": {"login": "octocat"},
        }
    ).encode()
