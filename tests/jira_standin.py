"""TEST DOUBLE: a tiny stand-in for Jira's REST API v2 comment calls, for tests only.

No Jira installs here, so this answers what the failure notes and status comments use, with Jira's
status codes and error bodies: basic auth (email + API token), 401 for bad credentials, 404 for an
unknown issue or comment, 400 for an empty comment; comments listed in pages (`startAt`, `maxResults`,
`total`; without their properties, as Jira lists them), added and edited (PUT), each optionally with
comment properties (`"properties": [{"key", "value"}]`, set with the body; a key is a string of at most
255 characters, a value non-empty JSON of at most 32,768 characters, else 400); and comments got by id
(`POST /rest/api/2/comment/list`, `{"ids": [...]}` of at most 1,000, `expand=properties`), answered as a
page (`startAt`, `maxResults`, `total`, `isLast`, `values`) holding at most `LIST_PAGE` of them, unknown
ids left out. It keeps every body a comment had (`comment_history`) and its properties
(`comment_properties`), and can fail the next calls (`fail_next`) as Jira does when it is overloaded
(503) or refuses (403).

    with JiraStandin(email="bot@acme.test", token="t", issues=["ENG-1"]) as jira:
        jira.base_url, jira.comments("ENG-1"), jira.comment_properties("ENG-1")
"""

import base64
import json
import threading
from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.standin_server import HeldReply, ThreadedServer

# Jira documents no page size for comments got by id; answering fewer than asked keeps callers honest.
LIST_PAGE = 50
_MAX_IDS = 1_000
_MAX_PROPERTY_KEY = 255
_MAX_PROPERTY_VALUE = 32_768


class JiraStandin:
    def __init__(self, email: str = "bot@acme.test", token: str = "t", issues: Iterable[str] = ()) -> None:
        self._credentials = f"Basic {base64.b64encode(f'{email}:{token}'.encode()).decode()}"
        self._comments: dict[str, list[dict[str, Any]]] = {key: [] for key in issues}
        self._edits: dict[str, list[str]] = {}
        self._properties: dict[str, dict[str, Any]] = {}
        self._failures: list[int] = []
        self.calls: list[tuple[str, str]] = []
        # hold_next_comment_reply(): the comment is stored, its reply withheld until release_reply().
        self._held = HeldReply()
        self.holding = self._held.holding
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
        self._held.arm()

    def release_reply(self) -> None:
        self._held.release()

    def comment_history(self, key: str) -> list[list[str]]:
        """Per comment on the issue, every body it had (its creation, then each edit)."""
        with self._lock:
            return [list(self._edits[c["id"]]) for c in self._comments.get(key, [])]

    def comments(self, key: str) -> list[str]:
        with self._lock:
            return [c["body"] for c in self._comments.get(key, [])]

    def comment_properties(self, key: str) -> list[dict[str, Any]]:
        """Per comment on the issue, its properties: property key -> value."""
        with self._lock:
            return [json.loads(json.dumps(self._properties[c["id"]])) for c in self._comments.get(key, [])]

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
            payload = await request.json()
            body = payload.get("body", "")
            properties = _properties_of(payload)
            with self._lock:
                if key not in self._comments:
                    return _not_found()
                if not body.strip():
                    return _empty_body()
                if isinstance(properties, JSONResponse):
                    return properties
                comment = {"id": str(10000 + sum(map(len, self._comments.values()))), "body": body}
                self._comments[key].append(comment)
                self._edits[comment["id"]] = [body]
                self._properties[comment["id"]] = properties
                hold = self._held.take()
            if hold:
                await self._held.hold()
            return comment

        @app.put("/rest/api/2/issue/{key}/comment/{comment_id}")
        async def edit_comment(key: str, comment_id: str, request: Request):
            payload = await request.json()
            body = payload.get("body", "")
            properties = _properties_of(payload)
            with self._lock:
                comment = next((c for c in self._comments.get(key, []) if c["id"] == comment_id), None)
                if comment is None:
                    return _not_found()
                if not body.strip():
                    return _empty_body()
                if isinstance(properties, JSONResponse):
                    return properties
                comment["body"] = body
                self._edits[comment_id].append(body)
                self._properties[comment_id].update(properties)  # the listed keys set, the others kept
                return comment

        @app.post("/rest/api/2/comment/list")
        async def comments_by_id(request: Request, expand: str = ""):
            ids = (await request.json()).get("ids")
            if (
                not isinstance(ids, list)
                or not ids
                or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids)
            ):
                return _bad_request("ids: a list of comment IDs is required.")
            if len(ids) > _MAX_IDS:
                return _bad_request(f"A maximum of {_MAX_IDS} comment IDs can be specified.")
            wanted = {str(i) for i in ids}
            with_properties = "properties" in [part.strip() for part in expand.split(",")]
            with self._lock:
                found = sorted(
                    (c for comments in self._comments.values() for c in comments if c["id"] in wanted),
                    key=lambda c: int(c["id"]),
                )
                values = [
                    dict(c, properties=[{"key": k, "value": v} for k, v in self._properties[c["id"]].items()])
                    if with_properties
                    else dict(c)
                    for c in found[:LIST_PAGE]
                ]
            return {
                "startAt": 0,
                "maxResults": LIST_PAGE,
                "total": len(found),
                "isLast": len(found) <= LIST_PAGE,
                "values": json.loads(json.dumps(values)),
            }

        return app


def _properties_of(payload: dict) -> dict[str, Any] | JSONResponse:
    """A comment's `properties` as Jira takes them (EntityProperty: `key`, JSON `value`), or its 400."""
    listed = payload.get("properties", [])
    if not isinstance(listed, list):
        return _bad_request("properties: a list of entity properties is expected.")
    properties: dict[str, Any] = {}
    for prop in listed:
        if not isinstance(prop, dict) or not isinstance(prop.get("key"), str) or not prop["key"]:
            return _bad_request("The property key must be a non-empty string.")
        if len(prop["key"]) > _MAX_PROPERTY_KEY:
            return _bad_request(f"The property key cannot be longer than {_MAX_PROPERTY_KEY} characters.")
        value = prop.get("value")
        if value is None or value in ("", {}, []):
            return _bad_request(f"The property '{prop['key']}' must have a non-empty JSON value.")
        if len(json.dumps(value)) > _MAX_PROPERTY_VALUE:
            return _bad_request(
                f"The property '{prop['key']}' value cannot be longer than {_MAX_PROPERTY_VALUE} characters."
            )
        properties[prop["key"]] = value
    return properties


def _empty_body() -> JSONResponse:
    return JSONResponse(
        {"errorMessages": [], "errors": {"comment": "Comment body can not be empty!"}}, status_code=400
    )


def _bad_request(message: str) -> JSONResponse:
    return JSONResponse({"errorMessages": [message], "errors": {}}, status_code=400)


def _not_found() -> JSONResponse:
    return JSONResponse(
        {"errorMessages": ["Issue does not exist or you do not have permission to see it."], "errors": {}},
        status_code=404,
    )
