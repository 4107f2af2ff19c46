"""The pool agent's side of the REST API (seed 003): register, poll, report, over a list of conductor URLs.

Any conductor serves any agent (the dispatch state is in Temporal), so when one fails (a dropped
connection, a timeout, a 5xx) the agent simply moves on to the next URL. It registers lazily, and again
whenever a conductor refuses its token (expired, or signed with another conductor's secret).
"""

import asyncio
import logging

import httpx
from pydantic import ValidationError

from agent_runtime.connection import TlsFiles
from contracts.pool import AgentRegistration, Registered, ReportAck, ScriptTask, TaskReport

log = logging.getLogger(__name__)

# Above the conductor's own 10 s limit on its Temporal calls, so its 503 arrives before our timeout.
HTTP_TIMEOUT = httpx.Timeout(15.0, connect=5.0)


class ConductorUnavailable(Exception):
    """This conductor failed the call; the next call goes to the next URL."""


class RegistrationRefused(Exception):
    """The join token or the registration was refused: retrying will not help."""


class ReportRefused(Exception):
    """403/404/409/422 on a report: the task is not (or no longer) this agent's, or the report is bad."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status


class ConductorApi:
    def __init__(
        self, urls: list[str], registration: AgentRegistration, join_token: str, tls: TlsFiles | None = None
    ) -> None:
        if not urls:
            raise ValueError("at least one conductor URL is needed")
        self._urls = [url.rstrip("/") for url in urls]
        self._index = 0
        self._registration = registration
        self._join_token = join_token
        self._token = ""
        self._register_lock = asyncio.Lock()
        self._http = httpx.AsyncClient(timeout=HTTP_TIMEOUT, verify=tls.ssl_context() if tls else True)
        self.beat_seconds = 5.0

    @property
    def url(self) -> str:
        return self._urls[self._index]

    async def aclose(self) -> None:
        await self._http.aclose()

    async def poll(self) -> ScriptTask | None:
        response = await self._call("GET", "/api/v1/tasks", params={"agent_id": self._registration.agent_id})
        if response.status_code == 204:
            return None
        if response.status_code != 200:
            raise self._unavailable(self.url, f"poll answered {response.status_code}: {_detail(response)}")
        return ScriptTask.model_validate_json(response.content)

    async def report(self, task_id: str, report: TaskReport) -> ReportAck:
        response = await self._call(
            "POST", f"/api/v1/tasks/{task_id}/status", json=report.model_dump(mode="json")
        )
        if response.status_code in (403, 404, 409, 422):
            raise ReportRefused(response.status_code, _detail(response))
        if response.status_code != 200:
            raise self._unavailable(self.url, f"report answered {response.status_code}: {_detail(response)}")
        return ReportAck.model_validate_json(response.content)

    async def _call(self, method: str, path: str, **kwargs) -> httpx.Response:
        url = self.url
        if not self._token:
            await self._register(url)
        response = await self._send(url, method, path, **kwargs)
        if response.status_code == 401:
            log.info("%s refused our token (%s): registering again", url, _detail(response))
            await self._register(url, refused=self._token)
            response = await self._send(url, method, path, **kwargs)
        if response.status_code == 401 or response.status_code >= 500:
            raise self._unavailable(url, f"{response.status_code}: {_detail(response)}")
        return response

    async def _send(self, url: str, method: str, path: str, **kwargs) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self._token}"}
        try:
            return await self._http.request(method, url + path, headers=headers, **kwargs)
        except httpx.HTTPError as err:
            raise self._unavailable(url, f"{type(err).__name__}: {err}") from err

    async def _register(self, url: str, refused: str = "") -> None:
        async with self._register_lock:
            if self._token and self._token != refused:
                return  # another call registered meanwhile
            try:
                response = await self._http.post(
                    url + "/api/v1/agents/register",
                    json=self._registration.model_dump(mode="json"),
                    headers={"Authorization": f"Bearer {self._join_token}"},
                )
            except httpx.HTTPError as err:
                raise self._unavailable(url, f"{type(err).__name__}: {err}") from err
            if response.status_code >= 500:
                raise self._unavailable(url, f"register answered {response.status_code}: {_detail(response)}")
            if response.status_code != 200:
                raise RegistrationRefused(f"{url} refused registration: {_detail(response)}")
            try:
                registered = Registered.model_validate_json(response.content)
            except ValidationError as err:
                raise self._unavailable(url, f"bad register answer: {err}") from err
            self._token, self.beat_seconds = registered.token, registered.beat_seconds
            log.info("registered with %s as %s", url, registered.agent_id)

    def _unavailable(self, url: str, why: str) -> ConductorUnavailable:
        # Move on only if no other call moved on already, so concurrent failures skip no URL.
        if self.url == url and len(self._urls) > 1:
            self._index = (self._index + 1) % len(self._urls)
            log.warning("conductor %s failed (%s); switching to %s", url, why, self.url)
        else:
            log.warning("conductor %s failed (%s)", url, why)
        return ConductorUnavailable(why)


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        return str(body.get("message") or body.get("detail") or body)[:500]
    return str(body)[:500]
