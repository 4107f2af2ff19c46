"""TEST DOUBLE: a tiny stand-in for Jira's REST API v2 comment calls, for tests only.

No Jira installs here, so this answers what the failure notes use, with Jira's status codes and
error bodies: basic auth (email + API token), 401 for bad credentials, 404 for an unknown issue,
400 for an empty comment.

    with JiraStandin(email="bot@acme.test", token="t", issues=["ENG-1"]) as jira:
        jira.base_url, jira.comments("ENG-1")
"""

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
            return await call_next(request)

        @app.get("/rest/api/2/issue/{key}/comment")
        def list_comments(key: str):
            with self._lock:
                if key not in self._comments:
                    return _not_found()
                found = list(self._comments[key])
            return {"startAt": 0, "maxResults": 100, "total": len(found), "comments": found}

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
                return comment

        return app


def _not_found() -> JSONResponse:
    return JSONResponse(
        {"errorMessages": ["Issue does not exist or you do not have permission to see it."], "errors": {}},
        status_code=404,
    )
