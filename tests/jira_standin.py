"""TEST DOUBLE: a tiny stand-in for Jira's REST API v2 comment calls, for tests only.

No Jira installs here, so this answers what the failure notes and status comments use, with Jira's
status codes and error bodies: basic auth (email + API token), 401 for bad credentials, 404 for an
unknown issue or comment, 400 for an empty comment; comments listed in pages (`startAt`, `maxResults`,
`total`), added and edited (PUT). It keeps every body a comment had (`comment_history`) and can fail the
next calls (`fail_next`) as Jira does when it is overloaded (503) or refuses (403).

    with JiraStandin(email="bot@acme.test", token="t", issues=["ENG-1"]) as jira:
        jira.base_url, jira.comments("ENG-1")
"""

import asyncio
import base64
import threading
from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.standin_server import ThreadedServer


class JiraStandin:
    def __init__(self, email: str = "bot@acme.test", token: str = "t", issues: Iterable[str] = ()) -> None:
        self._credentials = f"Basic {base64.b64encode(f'{email}:{token}'.encode()).decode()}"
        self._comments: dict[str, list[dict[str, Any]]] = {key: [] for key in issues}
        self._edits: dict[str, list[str]] = {}
        self._failures: list[int] = []
        self.calls: list[tuple[str, str]] = []
        # hold_next_comment_reply(): the comment is stored, its reply withheld until release_reply().
        self._hold = False
        self.holding = threading.Event()
        self._release = threading.Event()
        self._lock = threading.Lock()
        self._http = ThreadedServer(self._build_app(), "Jira stand-in")

    @property
    def base_url(self) -> str:
        return self._http.base_url

    def __enter__(self) -> "JiraStandin":
        self._http.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.stop()

    def add_issue(self, key: str) -> None:
        with self._lock:
            self._comments.setdefault(key, [])

    def fail_next(self, status: int, times: int = 1) -> None:
        self._failures += [status] * times

    def hold_next_comment_reply(self) -> None:
        """The next added comment is stored (Jira has it) but its reply waits for `release_reply()`: the
        caller can be killed in between, as a conductor dying mid-call would be."""
        self._hold = True

    def release_reply(self) -> None:
        self._release.set()

    def comment_history(self, key: str) -> list[list[str]]:
        """Per comment on the issue, every body it had (its creation, then each edit)."""
        with self._lock:
            return [list(self._edits[c["id"]]) for c in self._comments.get(key, [])]

    def comments(self, key: str) -> list[str]:
        with self._lock:
            return [c["body"] for c in self._comments.get(key, [])]

    def _build_app(self) -> FastAPI:
        app = FastAPI()

        @app.middleware("http")
        async def authenticate(request: Request, call_next):
            if request.headers.get("authorization") != self._credentials:
                # Jira answers bad credentials with a bare 401 and this header.
                return JSONResponse(
                    {"errorMessages": ["You are not authenticated."], "errors": {}},
                    status_code=401,
                    headers={"X-Seraph-LoginReason": "AUTHENTICATED_FAILED"},
                )
            self.calls.append((request.method, request.url.path))
            if self._failures:
                status = self._failures.pop(0)
                return JSONResponse({"errorMessages": [f"HTTP {status}"], "errors": {}}, status_code=status)
            return await call_next(request)

        @app.get("/rest/api/2/issue/{key}/comment")
        def list_comments(key: str, startAt: int = 0, maxResults: int = 50):
            maxResults = max(1, min(maxResults, 100))
            with self._lock:
                if key not in self._comments:
                    return _not_found()
                found = list(self._comments[key])
            page = found[startAt : startAt + maxResults]
            return {"startAt": startAt, "maxResults": maxResults, "total": len(found), "comments": page}

        @app.post("/rest/api/2/issue/{key}/comment", status_code=201)
        async def add_comment(key: str, request: Request):
            body = (await request.json()).get("body", "")
            with self._lock:
                if key not in self._comments:
                    return _not_found()
                if not body.strip():
                    return JSONResponse(
                        {"errorMessages": [], "errors": {"comment": "Comment body can not be empty!"}},
                        status_code=400,
                    )
                comment = {"id": str(10000 + sum(map(len, self._comments.values()))), "body": body}
                self._comments[key].append(comment)
                self._edits[comment["id"]] = [body]
                hold, self._hold = self._hold, False
            if hold:
                self.holding.set()
                while not self._release.is_set():
                    await asyncio.sleep(0.05)
            return comment

        @app.put("/rest/api/2/issue/{key}/comment/{comment_id}")
        async def edit_comment(key: str, comment_id: str, request: Request):
            body = (await request.json()).get("body", "")
            with self._lock:
                comment = next((c for c in self._comments.get(key, []) if c["id"] == comment_id), None)
                if comment is None:
                    return _not_found()
                if not body.strip():
                    return JSONResponse(
                        {"errorMessages": [], "errors": {"comment": "Comment body can not be empty!"}},
                        status_code=400,
                    )
                comment["body"] = body
                self._edits[comment_id].append(body)
                return comment

        return app


def _not_found() -> JSONResponse:
    return JSONResponse(
        {"errorMessages": ["Issue does not exist or you do not have permission to see it."], "errors": {}},
        status_code=404,
    )
