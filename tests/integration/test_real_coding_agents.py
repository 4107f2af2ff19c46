"""Ticket jobs with the REAL Codex CLI and Claude Code, through the real conductor and its model gateway.

The only stand-in is the model provider (tests/model_standin.py), scripted per test. The conductor holds
the provider key; the agent, its CLI and its files hold only the job token.
"""

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import WorkflowFailureError
from temporalio.service import RPCError

from conductor_worker.commands.logs_cli import print_log
from conductor_worker.gateway.log_store import open_log_store
from conductor_worker.intake.messages import parse_message
from conductor_worker.intake.sqs import SqsIntake
from contracts import search_attributes as sa
from contracts.ids import ticket_job_id, ticket_workflow_id
from contracts.jobs import JobState
from contracts.operator import SteerRequest
from contracts.policies import JobPolicy
from contracts.tickets import DESCRIPTION_LIMIT_BYTES, TRUNCATION_MARKER
from contracts.usage import ModelPrice, ModelUsage
from model_gateway.usage import read_usage
from security.tokens import mint_token
from stores.job_store import JobAttemptDir
from stores.usage_store import AttemptUsageStore
from tests.git_helpers import git
from tests.github_standin import GithubStandin
from tests.helpers import (
    fresh_key,
    is_running,
    stage_attempt,
    ticket_body,
    ticket_result,
    wait_for,
)
from tests.integration.conftest import UPSTREAM_KEY, run_ticket
from tests.jira_standin import JiraStandin
from tests.job_history import agent_launches
from tests.model_standin import (
    Fail,
    ModelStandin,
    Stream,
    add_file_patch,
    claude_message_turn,
    claude_write_turn,
    codex_message_turn,
    codex_patch_turn,
)
from tests.operator_cli import run_readme_command
from workflows.agent_job import AgentJobWorkflow

pytestmark = pytest.mark.timeout(90)


GITHUB_REPO = "acme/greeter"


@pytest.fixture
def github():
    with GithubStandin(token="gh-secret", repos=[GITHUB_REPO]) as standin:
        yield standin


def with_github_route(settings, github: GithubStandin, sample_remote: Path, coding_agent: str):
    """The ticket's route publishes through the `github` publisher, to the GitHub stand-in."""
    routes = settings.routes_file.with_name("github-routes.yaml")
    routes.write_text(
        "tickets:\n  - project: ENG\n    route:\n"
        f"      repo_url: {sample_remote}\n      publisher: github\n"
        f"      github_repo: {GITHUB_REPO}\n      name: {GITHUB_REPO}\n"
    )
    return settings.model_copy(
        update={
            "coding_agent": coding_agent,
            "routes_file": routes,
            "github_api_url": github.base_url,
            "github_token": SecretStr("gh-secret"),
        }
    )


def assert_one_pr(github: GithubStandin, result, key: str, summary: str) -> None:
    """The branch's commit is the PR's head, and the agent's final message is the PR body's summary."""
    [pr] = github.pulls(GITHUB_REPO)
    assert result.pr_url == pr["html_url"]
    assert pr["head"]["ref"] == f"conductor/{key}"
    assert f"\n\n{summary}\n\n---\nOpened by Agent Conductor for job {result.job_id}" in pr["body"], pr[
        "body"
    ]


PRICE = ModelPrice(input_per_mtok=1.25, cached_input_per_mtok=0.125, output_per_mtok=10)


async def assert_usage_shown(client, handle, usage: ModelUsage, cost_text: str) -> None:
    """In the search attributes (found by a visibility query) and in the Web UI's current details."""
    attributes = (await handle.describe()).typed_search_attributes
    assert attributes.get(sa.MODEL_TOKENS) == usage.tokens
    assert attributes.get(sa.MODEL_COST_USD) == usage.cost_usd
    query = f"WorkflowId = '{handle.id}' AND ModelTokens >= {usage.tokens}"
    assert [w.id async for w in client.list_workflows(query)] == [handle.id]
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    details = metadata.current_details
    assert f"model usage: {usage.requests} model request(s), {usage.input_tokens} input tokens" in details
    assert cost_text in details, details


def attempt(settings, key: str, n: int = 1) -> JobAttemptDir:
    return JobAttemptDir(settings.jobs_dir, ticket_job_id("jira", key), n)


class ProcessWatch:
    """Reads /proc/<pid>/environ of every coding-agent CLI process while the job runs."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self.environs: dict[int, bytes] = {}
        self._task: asyncio.Task | None = None

    async def _watch(self) -> None:
        while True:
            for proc in Path("/proc").glob("[0-9]*"):
                try:
                    cmdline = (proc / "cmdline").read_bytes()
                    if any(name.encode() in cmdline for name in self.names) and b"pytest" not in cmdline:
                        self.environs.setdefault(int(proc.name), (proc / "environ").read_bytes())
                except OSError:
                    continue
            await asyncio.sleep(0.05)

    def __enter__(self) -> "ProcessWatch":
        self._task = asyncio.get_running_loop().create_task(self._watch())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


def assert_no_upstream_key_anywhere(settings, key: str, model: ModelStandin, watch: ProcessWatch) -> None:
    job = attempt(settings, key)
    # The agent's work directory: task files, the clone, CODEX_HOME / HOME and everything the CLI wrote.
    files = [p for p in job.root.rglob("*") if p.is_file()]
    assert any(p.name == "job.json" for p in files)
    leaked = [p for p in files if UPSTREAM_KEY.encode() in p.read_bytes()]
    assert not leaked, f"the upstream key is in {leaked}"
    assert watch.environs, "no coding-agent process was seen running"
    assert not [pid for pid, env in watch.environs.items() if UPSTREAM_KEY.encode() in env]
    assert any(b"CONDUCTOR_AGENT_TOKEN=" in env or b"_TOKEN=" in env for env in watch.environs.values())
    # The provider sees the conductor's key and never the job token.
    for request in model.requests:
        presented = request.headers.get("authorization", "") + request.headers.get("x-api-key", "")
        assert UPSTREAM_KEY in presented, request.headers
        assert "." not in presented.removeprefix("Bearer "), "a job token reached the provider"


async def test_codex_ticket_job_commits_the_scripted_edit_and_opens_a_pr(
    client, agent_settings, start_conductor, sample_remote, model, github
):
    settings = with_github_route(agent_settings, github, sample_remote, "codex").model_copy(
        update={"model_prices": {"gpt-5.5": PRICE}}
    )
    key = fresh_key()
    model.script_responses(
        # Slow enough for the process watch to see the CLI.
        Stream(codex_patch_turn(add_file_patch(f"docs/{key}.md", f"Fixed {key}")).events, delay=0.2),
        codex_message_turn(f"Documented the fix for {key}"),
    )
    started = time.monotonic()
    with ProcessWatch(("codex", "agent_runtime")) as watch:
        result = await run_ticket(client, settings, start_conductor, key)

    assert result.state == JobState.SUCCEEDED, result
    assert git("show", f"conductor/{key}:docs/{key}.md", cwd=sample_remote) == f"Fixed {key}"
    assert git("diff", "--name-only", "main", f"conductor/{key}", cwd=sample_remote).split() == [
        f"docs/{key}.md"
    ]
    assert git("rev-parse", f"conductor/{key}", cwd=sample_remote) == result.commit_sha
    assert_one_pr(github, result, key, f"Documented the fix for {key}")
    usage = read_usage(AttemptUsageStore(settings.open_blob_store()), attempt(settings, key))
    assert (usage.requests, usage.input_tokens, usage.output_tokens) == (2, 200, 40)
    # Cost by the price table: 200 input tokens at $1.25/M and 40 output at $10/M.
    assert (usage.cost_usd, usage.requests_unpriced) == (0.00065, 0)
    # The job's `status`, its result, its search attributes and its Web UI details show what it counted.
    handle = client.get_workflow_handle(result.job_id)
    status = await handle.query(AgentJobWorkflow.status)
    assert status.progress.model_usage == usage == result.agent.model_usage
    await assert_usage_shown(client, handle, usage, "$0.000650")
    # What the agent did, as events: in `status`, and in `conductor logs JOB --events`.
    assert [(e.kind, e.summary) for e in status.progress.events] == [
        ("file_change", "add"),
        ("message", f"Documented the fix for {key}"),
    ]
    assert status.progress.events[0].files[0].endswith(f"/repo/docs/{key}.md")
    printed: list[str] = []
    print_log(
        open_log_store(settings),
        result.job_id,
        events=True,
        echo=lambda text, err=False: printed.append(text),
    )
    assert printed[1:] == [
        f"{printed[1][:8]} file_change: add [{status.progress.events[0].files[0]}]",
        f"{printed[2][:8]} message: Documented the fix for {key}",
    ]
    # The agent's final message is the job's summary, which the PR body carries.
    assert result.summary == f"Documented the fix for {key}"
    assert_no_upstream_key_anywhere(settings, key, model, watch)
    config = next(attempt(settings, key).root.rglob("codex/config.toml")).read_text()
    assert 'env_key = "CONDUCTOR_MODEL_TOKEN"' in config and "127.0.0.1" in config
    print(f"codex ticket job: {time.monotonic() - started:.1f}s")


async def test_claude_ticket_job_commits_the_scripted_edit_and_opens_a_pr(
    client, agent_settings, start_conductor, sample_remote, model, github
):
    settings = with_github_route(agent_settings, github, sample_remote, "claude")
    key = fresh_key()
    model.script_messages(
        lambda body: Stream(claude_write_turn(f"docs/{key}.md", f"Fixed {key}\n")(body).events, delay=0.2),
        claude_message_turn(f"Documented the fix for {key}"),
    )
    started = time.monotonic()
    with ProcessWatch(("claude", "agent_runtime")) as watch:
        result = await run_ticket(client, settings, start_conductor, key)

    assert result.state == JobState.SUCCEEDED, result
    assert git("show", f"conductor/{key}:docs/{key}.md", cwd=sample_remote) == f"Fixed {key}"
    usage = read_usage(AttemptUsageStore(settings.open_blob_store()), attempt(settings, key))
    assert usage.requests >= 2 and usage.output_tokens >= 40
    status = await client.get_workflow_handle(result.job_id).query(AgentJobWorkflow.status)
    assert status.progress.model_usage == usage == result.agent.model_usage
    # Claude Code's model is not in the (empty) price table: counted, costed at 0 and said so.
    assert usage.cost_usd == 0 and usage.requests_unpriced == usage.requests
    await assert_usage_shown(client, client.get_workflow_handle(result.job_id), usage, "unpriced models")
    assert git("rev-parse", f"conductor/{key}", cwd=sample_remote) == result.commit_sha
    assert_one_pr(github, result, key, f"Documented the fix for {key}")
    # Claude Code's stream-json events, in the same contract as codex's.
    assert [(e.kind, e.summary) for e in status.progress.events] == [
        ("file_change", "Write"),
        ("message", f"Documented the fix for {key}"),
    ]
    assert status.progress.events[0].files[0].endswith(f"/repo/docs/{key}.md")
    assert_no_upstream_key_anywhere(settings, key, model, watch)
    print(f"claude ticket job: {time.monotonic() - started:.1f}s")


async def test_ended_and_superseded_tokens_are_refused_by_the_model_gateway(
    client, agent_settings, start_conductor, model
):
    settings = agent_settings.model_copy(update={"coding_agent": "codex"})
    key = fresh_key()
    model.script_responses(
        codex_patch_turn(add_file_patch(f"docs/{key}.md", "x")), codex_message_turn("done")
    )
    result = await run_ticket(client, settings, start_conductor, key)
    assert result.state == JobState.SUCCEEDED
    secret = settings.signing_secret()
    url = f"http://{settings.rest_listen}/v1/responses"
    request = {"model": "gpt-5.5", "stream": True, "input": "spend more"}

    async def call(token: str) -> httpx.Response:
        async with httpx.AsyncClient() as http:
            return await http.post(url, json=request, headers={"authorization": f"Bearer {token}"})

    ended = await call(mint_token(secret, result.job_id, 1, ttl_seconds=60))
    assert ended.status_code == 401 and "ended" in ended.json()["error"]["message"]

    # A live attempt (staged, no result) of another job: forwarded. Then a later attempt supersedes it.
    live = JobAttemptDir(settings.jobs_dir, "job/ticket/jira/LIVE-1", 1)
    stage_attempt(settings, live.job_id, 1)
    token = mint_token(secret, live.job_id, 1, ttl_seconds=60)
    before = len(model.requests)
    assert (await call(token)).status_code == 200
    stage_attempt(settings, live.job_id, 2)
    superseded = await call(token)
    assert superseded.status_code == 401 and "superseded" in superseded.json()["error"]["message"]
    assert len(model.requests) == before + 1, "a refused token must cost nothing upstream"


async def test_429_with_retry_after_then_success(
    client, agent_settings, start_conductor, sample_remote, model
):
    settings = agent_settings.model_copy(update={"coding_agent": "codex"})
    key = fresh_key()
    model.script_responses(
        Fail(429, retry_after=1, message="rate limited"),
        codex_patch_turn(add_file_patch(f"docs/{key}.md", "after the 429")),
        codex_message_turn("done"),
    )
    result = await run_ticket(client, settings, start_conductor, key)

    assert result.state == JobState.SUCCEEDED, result
    first, second, *_ = model.requests_to("/v1/responses")
    assert second.at - first.at >= 0.95, "Retry-After was not honoured"
    assert first.body == second.body
    assert git("show", f"conductor/{key}:docs/{key}.md", cwd=sample_remote) == "after the 429"


async def test_a_stream_cut_mid_way_fails_the_job_clearly(client, agent_settings, start_conductor, model):
    settings = agent_settings.model_copy(update={"coding_agent": "codex"})
    key = fresh_key()
    turn = codex_patch_turn(add_file_patch(f"docs/{key}.md", "never"))
    model.script_responses(Stream(turn.events, cut_after=1))
    started = time.monotonic()

    with pytest.raises(WorkflowFailureError) as failed:
        await run_ticket(client, settings, start_conductor, key)

    elapsed = time.monotonic() - started
    message = failed.value.cause.message
    assert "codex" in message and ("stream" in message.lower() or "exited with code" in message), message
    assert elapsed < 60
    print(f"cut stream -> job failed after {elapsed:.1f}s: {message}")


async def test_exit_0_without_a_change_ends_the_job_no_changes_with_the_agents_words_as_the_note(
    client, agent_settings, start_conductor, model
):
    with JiraStandin(email="conductor@acme.test", token="jira-secret") as jira:
        settings = agent_settings.model_copy(
            update={
                "coding_agent": "codex",
                "jira_base_url": jira.base_url,
                "jira_email": "conductor@acme.test",
                "jira_api_token": SecretStr("jira-secret"),
            }
        )
        key = fresh_key()
        jira.add_issue(key)
        model.script_responses(codex_message_turn("The ticket is already fixed on main."))

        with pytest.raises(WorkflowFailureError) as failed:
            await run_ticket(client, settings, start_conductor, key)

        words = "codex finished without changing anything: The ticket is already fixed on main."
        assert failed.value.cause.message == f"NO_CHANGES: {words}"
        status = await client.get_workflow_handle(ticket_job_id("jira", key)).query(AgentJobWorkflow.status)
        assert status.state == JobState.NO_CHANGES
        [note] = jira.comments(key)
        assert "ended NO_CHANGES" in note and words in note


@pytest.mark.parametrize("cli", ["codex", "claude"])
async def test_steering_reaches_the_running_agents_next_model_request(
    cli, client, agent_settings, start_conductor, sample_remote, model
):
    settings = agent_settings.model_copy(update={"coding_agent": cli})
    key = fresh_key()
    instruction = f"Also mention {key} in the changelog"
    if cli == "codex":
        # The first turn streams slowly, so the instruction arrives while the agent works on it.
        slow = codex_patch_turn(add_file_patch(f"docs/{key}.md", "first turn"))
        model.script_responses(Stream(slow.events, delay=0.5), codex_message_turn("done, as instructed"))
    else:
        model.script_messages(
            lambda body: Stream(claude_write_turn(f"docs/{key}.md", "first turn")(body).events, delay=0.5),
            claude_message_turn("done, as instructed"),
        )
    path = "/v1/responses" if cli == "codex" else "/v1/messages"
    await start_conductor(settings)
    await SqsIntake(client, settings, None).start_ticket(parse_message(ticket_body(key)))
    await wait_for(lambda: _first_request(model, path), timeout=60)
    job = client.get_workflow_handle(ticket_job_id("jira", key))

    ack = await job.execute_update(AgentJobWorkflow.steer, SteerRequest(text=instruction, by="alice"))
    result = await ticket_result(client, key, timeout=75)

    assert ack.delivered_to_agent and ack.seq == 1
    first, second, *_ = model.requests_to(path)
    assert instruction not in str(first.body)
    assert f"1. {instruction} (from alice)" in str(second.body)
    assert result.state == JobState.SUCCEEDED


async def _first_request(model: ModelStandin, path: str) -> bool:
    return bool(model.requests_to(path))


async def _logged(caplog, text: str) -> bool:
    return text in caplog.text


async def _awaiting_approval(client, key: str) -> bool:
    try:
        status = await client.get_workflow_handle(ticket_job_id("jira", key)).query(AgentJobWorkflow.status)
    except RPCError:  # not started yet
        return False
    return status.state == JobState.AWAITING_APPROVAL


def with_jira(settings, jira: JiraStandin):
    return settings.model_copy(
        update={
            "jira_base_url": jira.base_url,
            "jira_email": "conductor@acme.test",
            "jira_api_token": SecretStr("jira-secret"),
        }
    )


def with_route_budget(settings, sample_remote: Path, budget: str):
    routes = settings.routes_file.with_name("budget-routes.yaml")
    routes.write_text(
        "tickets:\n  - project: ENG\n    route:\n"
        f"      repo_url: {sample_remote}\n      name: examples/greeter\n"
        f"      max_concurrent_jobs: 50\n      {budget}\n"
    )
    return settings.model_copy(update={"routes_file": routes})


@pytest.mark.parametrize(
    ("answer", "budget_of"), [("approve", "route"), ("approve", "route cost"), ("refuse", "job kind")]
)
async def test_a_spent_budget_pauses_the_job_until_the_readme_line_answers(
    answer, budget_of, client, env, agent_settings, start_conductor, sample_remote, model, caplog
):
    # The first answer uses 120 tokens of 100 ($0.000325 of $0.0003): the agent's second request is held.
    settings = agent_settings.model_copy(update={"coding_agent": "codex"})
    readme_line = r"--name refuse_budget" if answer == "refuse" else r"approve_budget .*raise_tokens"
    if budget_of == "route":
        # The job kind has none (the conftest's policy); the route's rule sets it.
        assert settings.ticket_policy.token_budget == 0
        settings = with_route_budget(settings, sample_remote, "token_budget: 100")
    elif budget_of == "route cost":
        settings = with_route_budget(settings, sample_remote, "cost_budget_usd: 0.0003")
        settings = settings.model_copy(update={"model_prices": {"gpt-5.5": PRICE}})
        readme_line = r"approve_budget .*raise_cost_usd"
    else:
        policy = JobPolicy(retry_window_seconds=0, token_budget=100)
        settings = settings.model_copy(update={"ticket_policy": policy})
    key = fresh_key()
    model.script_responses(
        codex_patch_turn(add_file_patch(f"docs/{key}.md", "within budget")), codex_message_turn("done")
    )
    with JiraStandin(email="conductor@acme.test", token="jira-secret") as jira:
        jira.add_issue(key)
        settings = with_jira(settings, jira)
        await start_conductor(settings)
        await SqsIntake(client, settings, None).start_ticket(parse_message(ticket_body(key)))
        await wait_for(lambda: _awaiting_approval(client, key), timeout=60)
        assert len(model.requests_to("/v1/responses")) == 1, "the held request reached the provider"
        job_id = ticket_job_id("jira", key)
        address = env.client.service_client.config.target_host
        # The ticket says the job waits, and how to answer it (its status comment's latest edit).
        await wait_for(lambda: _commented(jira, key, "AWAITING_APPROVAL"), timeout=30)
        [note] = jira.comments(key)
        assert f"job {job_id} is AWAITING_APPROVAL (attempt 1)" in note and "120 tokens used" in note
        assert "--name approve_budget" in note and "--name refuse_budget" in note
        await wait_for(lambda: _noted(client, job_id, f"jira {key} comment "), timeout=10)

        await run_readme_command(readme_line, address, job_id=job_id)

        if answer == "approve":
            result = await ticket_result(client, key, timeout=60)
            assert result.state == JobState.SUCCEEDED
            assert len(model.requests_to("/v1/responses")) == 2
            assert git("show", f"conductor/{key}:docs/{key}.md", cwd=sample_remote) == "within budget"
            return
        with pytest.raises(WorkflowFailureError) as failed:
            await ticket_result(client, key, timeout=60)
    assert failed.value.cause.message == "FAILED: budget: refused by alice: too expensive"
    assert len(model.requests_to("/v1/responses")) == 1
    # The held request was answered with the refusal before the agent was stopped.
    await wait_for(lambda: _logged(caplog, "the job's token budget was refused"), timeout=10)
    (launch,) = await agent_launches(client, [ticket_job_id("jira", key)])  # from the job's history
    assert not is_running(int(launch.agent_id.removeprefix("local:")))


async def _commented(jira: JiraStandin, key: str, text: str) -> bool:
    return any(text in comment for comment in jira.comments(key))


async def _noted(client, job_id: str, where: str) -> bool:
    status = await client.get_workflow_handle(job_id).query(AgentJobWorkflow.status)
    return any(note.startswith(where) for note in status.notes)


async def test_a_1mb_ticket_description_reaches_the_cli_through_a_whole_job(
    client, agent_settings, start_conductor, sample_remote, model
):
    """The intake cuts the description in the workflow payloads to 64 KB (contracts/tickets.py: Temporal
    refuses payloads over 2 MB) and keeps the whole text in the blob store; the prompt gets all of it."""
    settings = agent_settings.model_copy(update={"coding_agent": "claude"})
    key = fresh_key()
    # 1 MB (10^6 bytes): with the rest of the ticket, just under the intake's 1 MiB message bound.
    description = "".join(f"line {n} of a very long ticket\n" for n in range(31_000))[:1_000_000]
    assert len(description.encode()) == 1_000_000
    last_line = description.rstrip("\n").rsplit("\n", 1)[-1]
    model.script_messages(claude_write_turn(f"docs/{key}.md", "read it\n"), claude_message_turn("done"))
    await start_conductor(settings)
    await SqsIntake(client, settings, None).start_ticket(
        parse_message(ticket_body(key, description=description))
    )
    result = await ticket_result(client, key, timeout=75)

    assert result.state == JobState.SUCCEEDED, result
    first = model.requests_to("/v1/messages")[0]
    assert last_line in str(first.body["messages"]) and "line 0 of a very long ticket" in str(first.body)
    assert "[conductor: description cut" not in str(first.body)
    # What travelled in Temporal: the cut text and the blob's reference, never the whole megabyte.
    ticket = (await client.get_workflow_handle(ticket_workflow_id("jira", key)).fetch_history()).events[0]
    started = ticket.workflow_execution_started_event_attributes.input.payloads[0].data
    assert len(started) < 100_000 and last_line.encode() not in started
    marker = TRUNCATION_MARKER.format(size=len(description.encode()), limit=DESCRIPTION_LIMIT_BYTES)
    assert json.dumps(marker)[1:-1].encode() in started
    blob = json.loads(started)["description_blob"]
    assert (settings.blobs_dir / blob).read_text() == description
