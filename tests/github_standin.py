"""TEST DOUBLE: a tiny stand-in for GitHub's REST API, for tests only. Never used by the service.

No GitHub-compatible server installs here, so this answers the calls the `github` publisher, the status
comments and the incident reports make through PyGithub, with GitHub's status codes and error bodies:
pull requests (create, list, edit), issues (create, list with label filters and Link-header pages, edit)
and issue comments (list in pages, create, edit); pulls and issues share one numbering, as on GitHub.

    with GithubStandin(token="t", repos=["acme/widgets"]) as gh:
        client = github.Github(base_url=gh.base_url, auth=github.Auth.Token("t"))

It serves on a free 127.0.0.1 port from a background thread (uvicorn), keeps pull requests in
memory, records every call in `.calls`, keeps every body a comment ever had (`comment_history`), can hide open pull requests from the list endpoint
(`hide_pulls_from_list()`) to act out GitHub's eventual consistency, and can fail the next calls
(`fail_next`) with a status GitHub answers, e.g. 502 or 403.
"""

import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.standin_server import HeldReply, ThreadedServer

BODY_LIMIT = 65536
_DOCS = "https://docs.github.com/rest"


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, str]
    json: Any = None


@dataclass
class _Repo:
    owner: str
    name: str
    pulls: dict[int, dict[str, Any]] = field(default_factory=dict)
    comments: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    issues: dict[int, dict[str, Any]] = field(default_factory=dict)

    def next_number(self) -> int:
        return len(self.pulls) + len(self.issues) + 1


class GithubStandin:
    def __init__(self, token: str = "t", repos: Iterable[str] = ("acme/widgets",)) -> None:
        self.token = token
        self.calls: list[Call] = []
        self._repos = {r: _Repo(*r.split("/", 1)) for r in repos}
        self._hide_list = 0
        self._failures: list[int] = []
        self._comment_ids = 5000
        # Every body each comment had, by comment id, oldest first.
        self._edits: dict[int, list[str]] = {}
        self._lock = threading.Lock()
        # hold_next_comment_reply(): the comment is stored, its reply withheld until release_reply().
        self._held = HeldReply()
        self.holding = self._held.holding
        self.app = self._build_app()
        self._http = ThreadedServer(self.app, "GitHub stand-in")

    # Lifecycle

    @property
    def base_url(self) -> str:
        return self._http.base_url

    def start(self) -> "GithubStandin":
        self._http.start()
        return self

    def stop(self) -> None:
        self._http.stop()

    def __enter__(self) -> "GithubStandin":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # Knobs and assertions

    def hide_pulls_from_list(self, times: int = 1) -> None:
        """The next `times` list calls answer `[]`, as GitHub may right after a PR is created."""
        self._hide_list = times

    def hold_next_comment_reply(self) -> None:
        """The next issue comment is stored (GitHub has it) but its reply waits for `release_reply()`: the
        caller can be killed in between, as a conductor dying mid-call would be."""
        self._held.arm()

    def release_reply(self) -> None:
        self._held.release()

    def fail_next(self, status: int, times: int = 1) -> None:
        """The next `times` calls (after authentication) answer `status` with GitHub's error body."""
        self._failures += [status] * times

    def add_issue(self, repo: str, title: str = "An issue", body: str = "") -> int:
        """Seed an issue (someone opened it earlier); returns its number."""
        with self._lock:
            return self._create_issue(self._repos[repo], title, body, [])["number"]

    def issues(self, repo: str) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(issue) for issue in self._repos[repo].issues.values()]

    def comment_history(self, repo: str, number: int) -> list[list[str]]:
        """Per comment on the issue or PR, every body it had (its creation, then each edit)."""
        with self._lock:
            return [list(self._edits[c["id"]]) for c in self._repos[repo].comments.get(number, [])]

    def comments(self, repo: str, number: int) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._repos[repo].comments.get(number, []))

    def pulls(self, repo: str) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(pr) for pr in self._repos[repo].pulls.values()]

    def add_pull(self, repo: str, head: str, base: str = "main", title: str = "", body: str = ""):
        """Seed a pull request, as if someone had opened it earlier."""
        with self._lock:
            return dict(self._create(self._repos[repo], head, base, title, body))

    def calls_to(self, method: str, path_suffix: str = "") -> list[Call]:
        return [c for c in self.calls if c.method == method and c.path.endswith(path_suffix)]

    # The fake API

    def _build_app(self) -> FastAPI:
        app = FastAPI()

        @app.middleware("http")
        async def record_and_authenticate(request: Request, call_next):
            body = await request.body()
            self.calls.append(
                Call(
                    request.method,
                    request.url.path,
                    dict(request.query_params),
                    _json_or_none(body),
                )
            )
            scheme, _, value = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() not in ("token", "bearer") or value != self.token:
                return _error(401, "Bad credentials")
            if self._failures:
                status = self._failures.pop(0)
                return _error(status, {403: "Forbidden", 404: "Not Found"}.get(status, "Server Error"))
            return await call_next(request)

        @app.get("/repos/{owner}/{name}")
        def get_repo(owner: str, name: str):
            repo = self._repos.get(f"{owner}/{name}")
            if repo is None:
                return _error(404, "Not Found")
            return self._repo_json(repo)

        @app.get("/repos/{owner}/{name}/pulls")
        def list_pulls(owner: str, name: str, state: str = "open", head: str = ""):
            repo = self._repos.get(f"{owner}/{name}")
            if repo is None:
                return _error(404, "Not Found")
            with self._lock:
                if self._hide_list > 0:
                    self._hide_list -= 1
                    return []
                return [
                    pr
                    for pr in repo.pulls.values()
                    if state in ("all", pr["state"]) and head in ("", pr["head"]["label"])
                ]

        @app.post("/repos/{owner}/{name}/pulls", status_code=201)
        async def create_pull(owner: str, name: str, request: Request):
            repo = self._repos.get(f"{owner}/{name}")
            if repo is None:
                return _error(404, "Not Found")
            data = await request.json()
            head, base = data.get("head", ""), data.get("base", "")
            if not head or not base or not data.get("title"):
                return _invalid("missing_field", "head, base and title are required")
            label = head if ":" in head else f"{owner}:{head}"
            body = data.get("body") or ""
            with self._lock:
                if any(p["state"] == "open" and p["head"]["label"] == label for p in repo.pulls.values()):
                    return _invalid("custom", f"A pull request already exists for {label}.")
                if len(body) > BODY_LIMIT:
                    return _invalid("custom", _too_long())
                return self._create(repo, head, base, data["title"], body)

        @app.get("/repos/{owner}/{name}/pulls/{number}")
        def get_pull(owner: str, name: str, number: int):
            repo = self._repos.get(f"{owner}/{name}")
            pr = repo.pulls.get(number) if repo else None
            return pr if pr is not None else _error(404, "Not Found")

        @app.patch("/repos/{owner}/{name}/pulls/{number}")
        async def edit_pull(owner: str, name: str, number: int, request: Request):
            repo = self._repos.get(f"{owner}/{name}")
            pr = repo.pulls.get(number) if repo else None
            if pr is None:
                return _error(404, "Not Found")
            data = await request.json()
            if len(data.get("body") or "") > BODY_LIMIT:
                return _invalid("custom", _too_long())
            with self._lock:
                pr.update({k: data[k] for k in ("title", "body", "state") if k in data})
                return pr

        # Pull requests are issues too: their conversation comments live under /issues/{number}.
        @app.get("/repos/{owner}/{name}/issues")
        def list_issues(
            owner: str,
            name: str,
            request: Request,
            state: str = "open",
            labels: str = "",
            direction: str = "desc",
            per_page: int = 30,
            page: int = 1,
        ):
            repo = self._repos.get(f"{owner}/{name}")
            if repo is None:
                return _error(404, "Not Found")
            wanted = {label for label in labels.split(",") if label}
            with self._lock:
                found = [
                    self._issue_json(repo, number)
                    for number in sorted(repo.issues.keys() | repo.pulls.keys(), reverse=direction == "desc")
                ]
            found = [
                issue
                for issue in found
                if state in ("all", issue["state"]) and wanted <= {label["name"] for label in issue["labels"]}
            ]
            return _paged(request, found, per_page, page)

        @app.post("/repos/{owner}/{name}/issues", status_code=201)
        async def create_issue(owner: str, name: str, request: Request):
            repo = self._repos.get(f"{owner}/{name}")
            if repo is None:
                return _error(404, "Not Found")
            data = await request.json()
            if not data.get("title"):
                return _invalid("missing_field", "title is missing", "Issue")
            if len(data.get("body") or "") > BODY_LIMIT:
                return _invalid("custom", _too_long(), "Issue")
            with self._lock:
                issue = self._create_issue(
                    repo, data["title"], data.get("body") or "", data.get("labels") or []
                )
                return self._issue_json(repo, issue["number"])

        @app.get("/repos/{owner}/{name}/issues/{number}")
        def get_issue(owner: str, name: str, number: int):
            repo = self._repos.get(f"{owner}/{name}")
            if repo is None or (number not in repo.pulls and number not in repo.issues):
                return _error(404, "Not Found")
            with self._lock:
                return self._issue_json(repo, number)

        @app.patch("/repos/{owner}/{name}/issues/{number}")
        async def edit_issue(owner: str, name: str, number: int, request: Request):
            repo = self._repos.get(f"{owner}/{name}")
            issue = repo.issues.get(number) if repo else None
            if issue is None:
                return _error(404, "Not Found")
            data = await request.json()
            if "title" in data and not data["title"]:
                return _invalid("missing_field", "title is missing", "Issue")
            if len(data.get("body") or "") > BODY_LIMIT:
                return _invalid("custom", _too_long(), "Issue")
            with self._lock:
                issue.update({k: data[k] for k in ("title", "body", "state") if k in data})
                if "labels" in data:
                    issue["labels"] = [{"name": label} for label in data["labels"]]
                return self._issue_json(repo, number)

        @app.get("/repos/{owner}/{name}/issues/{number}/comments")
        def list_comments(
            owner: str, name: str, number: int, request: Request, per_page: int = 30, page: int = 1
        ):
            repo = self._repos.get(f"{owner}/{name}")
            if repo is None or (number not in repo.pulls and number not in repo.issues):
                return _error(404, "Not Found")
            with self._lock:
                return _paged(request, list(repo.comments.get(number, [])), per_page, page)

        @app.post("/repos/{owner}/{name}/issues/{number}/comments", status_code=201)
        async def create_comment(owner: str, name: str, number: int, request: Request):
            repo = self._repos.get(f"{owner}/{name}")
            if repo is None or (number not in repo.pulls and number not in repo.issues):
                return _error(404, "Not Found")
            body = (await request.json()).get("body")
            if not body:
                return _invalid("missing_field", "body is missing", "IssueComment")
            if len(body) > BODY_LIMIT:
                return _invalid("custom", _too_long(), "IssueComment")
            with self._lock:
                self._comment_ids += 1
                comment = {"id": self._comment_ids, "body": body}
                comment["url"] = f"{self.base_url}/repos/{owner}/{name}/issues/comments/{comment['id']}"
                repo.comments.setdefault(number, []).append(comment)
                self._edits[comment["id"]] = [body]
                hold = self._held.take()
            if hold:
                await self._held.hold()
            return comment

        @app.patch("/repos/{owner}/{name}/issues/comments/{comment_id}")
        async def edit_comment(owner: str, name: str, comment_id: int, request: Request):
            repo = self._repos.get(f"{owner}/{name}")
            comments = [c for listed in repo.comments.values() for c in listed] if repo else []
            comment = next((c for c in comments if c["id"] == comment_id), None)
            if comment is None:
                return _error(404, "Not Found")
            body = (await request.json()).get("body")
            if not body:
                return _invalid("missing_field", "body is missing", "IssueComment")
            if len(body) > BODY_LIMIT:
                return _invalid("custom", _too_long(), "IssueComment")
            with self._lock:
                comment["body"] = body
                self._edits[comment_id].append(body)
                return comment

        return app

    def _create_issue(self, repo: _Repo, title: str, body: str, labels: list[str]) -> dict[str, Any]:
        number = repo.next_number()
        repo.issues[number] = {
            "id": 2000 + number,
            "number": number,
            "state": "open",
            "title": title,
            "body": body,
            "labels": [{"name": label} for label in labels],
        }
        return repo.issues[number]

    def _issue_json(self, repo: _Repo, number: int) -> dict[str, Any]:
        path = f"{repo.owner}/{repo.name}"
        if number in repo.issues:
            issue = {**repo.issues[number]}
        else:
            pr = repo.pulls[number]
            issue = {**pr, "labels": [], "pull_request": {"url": pr["url"]}}
        return {
            **issue,
            "url": f"{self.base_url}/repos/{path}/issues/{number}",
            "html_url": f"{self.base_url}/{path}/issues/{number}",
            "comments": len(repo.comments.get(number, [])),
            "user": {"login": "agent-conductor[bot]", "type": "Bot"},
        }

    def _create(self, repo: _Repo, head: str, base: str, title: str, body: str) -> dict[str, Any]:
        owner, _, ref = head.rpartition(":")
        number = repo.next_number()  # numbered per repository, issues and pulls alike, as on GitHub
        repo.pulls[number] = {
            "id": 1000 + number,
            "number": number,
            "state": "open",
            "title": title,
            "body": body,
            "url": f"{self.base_url}/repos/{repo.owner}/{repo.name}/pulls/{number}",
            "html_url": f"{self.base_url}/{repo.owner}/{repo.name}/pull/{number}",
            "head": {"ref": ref, "label": f"{owner or repo.owner}:{ref}"},
            "base": {"ref": base, "label": f"{repo.owner}:{base}"},
        }
        return repo.pulls[number]

    def _repo_json(self, repo: _Repo) -> dict[str, Any]:
        return {
            "id": 1,
            "name": repo.name,
            "full_name": f"{repo.owner}/{repo.name}",
            "owner": {"login": repo.owner, "type": "Organization"},
            "private": True,
            "default_branch": "main",
            "url": f"{self.base_url}/repos/{repo.owner}/{repo.name}",
            "html_url": f"{self.base_url}/{repo.owner}/{repo.name}",
        }


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse(
        {"message": message, "documentation_url": _DOCS, "status": str(status)}, status_code=status
    )


def _invalid(code: str, message: str, resource: str = "PullRequest") -> JSONResponse:
    errors = [{"resource": resource, "code": code, "message": message}]
    return JSONResponse(
        {
            "message": "Validation Failed",
            "errors": errors,
            "documentation_url": _DOCS,
            "status": "422",
        },
        status_code=422,
    )


def _paged(request: Request, items: list, per_page: int, page: int) -> JSONResponse:
    """One page, with GitHub's `Link` header naming the next and last pages (PyGithub follows `next`)."""
    per_page = max(1, min(per_page, 100))
    last = max(1, -(-len(items) // per_page))
    links = []
    for rel, number in (("next", page + 1), ("last", last)):
        if number <= last and (rel == "last" or page < last):
            links.append(f'<{request.url.include_query_params(page=number, per_page=per_page)}>; rel="{rel}"')
    headers = {"Link": ", ".join(links)} if links and page < last else {}
    return JSONResponse(items[(page - 1) * per_page : page * per_page], headers=headers)


def _too_long() -> str:
    return f"body is too long (maximum is {BODY_LIMIT} characters)"


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None
