"""TEST DOUBLE: a tiny stand-in for GitHub's REST API, for tests only. Never used by the service.

No GitHub-compatible server installs here, so this answers the few calls the `github` publisher
makes through PyGithub, with GitHub's status codes and error bodies:

    with GithubStandin(token="t", repos=["acme/widgets"]) as gh:
        client = github.Github(base_url=gh.base_url, auth=github.Auth.Token("t"))

It serves on a free 127.0.0.1 port from a background thread (uvicorn), keeps pull requests in
memory, records every call in `.calls`, and can hide open pull requests from the list endpoint
(`hide_pulls_from_list()`) to act out GitHub's eventual consistency.
"""

import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.standin_server import ThreadedServer

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


class GithubStandin:
    def __init__(self, token: str = "t", repos: Iterable[str] = ("acme/widgets",)) -> None:
        self.token = token
        self.calls: list[Call] = []
        self._repos = {r: _Repo(*r.split("/", 1)) for r in repos}
        self._hide_list = 0
        self._lock = threading.Lock()
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
        @app.get("/repos/{owner}/{name}/issues/{number}")
        def get_issue(owner: str, name: str, number: int):
            repo = self._repos.get(f"{owner}/{name}")
            pr = repo.pulls.get(number) if repo else None
            if pr is None:
                return _error(404, "Not Found")
            return {**pr, "url": f"{self.base_url}/repos/{owner}/{name}/issues/{number}", "pull_request": {}}

        @app.get("/repos/{owner}/{name}/issues/{number}/comments")
        def list_comments(owner: str, name: str, number: int):
            repo = self._repos.get(f"{owner}/{name}")
            if repo is None or number not in repo.pulls:
                return _error(404, "Not Found")
            with self._lock:
                return list(repo.comments.get(number, []))

        @app.post("/repos/{owner}/{name}/issues/{number}/comments", status_code=201)
        async def create_comment(owner: str, name: str, number: int, request: Request):
            repo = self._repos.get(f"{owner}/{name}")
            if repo is None or number not in repo.pulls:
                return _error(404, "Not Found")
            body = (await request.json()).get("body")
            if not body:
                return _invalid("missing_field", "body is missing")
            if len(body) > BODY_LIMIT:
                return _invalid("custom", _too_long())
            with self._lock:
                comments = repo.comments.setdefault(number, [])
                comment = {"id": 5000 + sum(map(len, repo.comments.values())), "body": body}
                comment["url"] = f"{self.base_url}/repos/{owner}/{name}/issues/comments/{comment['id']}"
                comments.append(comment)
                return comment

        return app

    def _create(self, repo: _Repo, head: str, base: str, title: str, body: str) -> dict[str, Any]:
        owner, _, ref = head.rpartition(":")
        number = len(repo.pulls) + 1  # numbered per repository, as on GitHub
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


def _invalid(code: str, message: str) -> JSONResponse:
    errors = [{"resource": "PullRequest", "code": code, "message": message}]
    return JSONResponse(
        {
            "message": "Validation Failed",
            "errors": errors,
            "documentation_url": _DOCS,
            "status": "422",
        },
        status_code=422,
    )


def _too_long() -> str:
    return f"body is too long (maximum is {BODY_LIMIT} characters)"


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None
