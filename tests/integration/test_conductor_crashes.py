"""The conductor SIGKILLed again and again while tickets flow: every job still ends in one branch and one PR."""

import asyncio
import os
import random
import signal
import time

import pytest
from temporalio.service import RPCError

from contracts.claims import claim_workflow_id
from tests.github_standin import GithubStandin
from tests.helpers import count_workflows, free_port, queue_depth, ticket_body, use_s3_stores, wait_for
from tests.scale_helpers import assert_one_branch_and_pr_each, conductor_process, send_all
from workflows.repo_claim import RepoClaimWorkflow

REPO = "acme/greeter"
TICKETS = 50
KILLS = 5


@pytest.mark.timeout(600)
@pytest.mark.parametrize("stores", ["local", "s3"])
async def test_50_tickets_survive_5_conductor_kills(
    stores, client, intake_settings, tmp_path, sample_remote, monkeypatch
):
    """With `s3`, task files, bundles, steering and logs live in S3 (moto's server); replicas whose state
    dirs differ are test_replicas_share_nothing.py's case."""
    routes = tmp_path / "crash-routes.yaml"
    routes.write_text(
        "tickets:\n  - route: {"
        f"repo_url: {sample_remote}, publisher: github, github_repo: {REPO}, name: {REPO}, "
        "max_concurrent_jobs: 50}\n"
    )
    settings = intake_settings.model_copy(update={"routes_file": routes})
    if stores == "s3":
        settings = use_s3_stores(settings, settings.aws_endpoint_url, monkeypatch)
    prefix = f"C{random.randrange(100, 999)}"
    keys = [f"{prefix}-{n}" for n in range(1, TICKETS + 1)]
    port, log = free_port(), tmp_path / "conductor.log"
    jobs_done = f"WorkflowType = 'AgentJobWorkflow' AND TicketKey STARTS_WITH '{prefix}-'"

    with GithubStandin(token="gh-secret", repos=[REPO]) as github:
        extra_env = {"CONDUCTOR_GITHUB_API_URL": github.base_url, "CONDUCTOR_GITHUB_TOKEN": "gh-secret"}
        send_all(settings, [ticket_body(key) for key in keys])
        conductor = conductor_process(settings, port, log, extra_env)
        kill_times = []
        try:
            for _ in range(KILLS):
                # A random moment: intake, launches, agent runs and publishing all get hit.
                await asyncio.sleep(random.uniform(2, 8))
                os.killpg(
                    conductor.pid, signal.SIGKILL
                )  # the conductor alone: agents have sessions of their own
                conductor.wait()
                kill_times.append(time.strftime("%H:%M:%S"))
                conductor = conductor_process(settings, port, log, extra_env)

            async def all_done():
                closed = await count_workflows(client, f"{jobs_done} AND ExecutionStatus != 'Running'")
                return closed if closed >= TICKETS else None

            await wait_for(all_done, timeout=420)
            # Queried while a conductor still serves the claim workflow: no claim outlived its job.
            # (A query can hit the sticky queue of a killed worker until Temporal moves it: ask again.)
            claim = client.get_workflow_handle(claim_workflow_id(str(sample_remote)))

            async def claim_state():
                try:
                    return await claim.query(RepoClaimWorkflow.queue)
                except RPCError:
                    return None

            state = await wait_for(claim_state, timeout=60)
            assert state.holders == [] and state.waiting == [], f"claims outlived their jobs: {state}"
        finally:
            if conductor.poll() is None:
                os.killpg(conductor.pid, signal.SIGTERM)
                conductor.wait(timeout=60)

        completed = await count_workflows(client, f"{jobs_done} AND ExecutionStatus = 'Completed'")
        assert completed == TICKETS, log.read_text()[-3000:]
        pulls = github.pulls(REPO)

    prs = assert_one_branch_and_pr_each(pulls, sample_remote, prefix, keys)
    assert queue_depth(settings, settings.sqs_queue_url) == 0
    print(f"{TICKETS} jobs, {prs} PRs, conductor SIGKILLed at {', '.join(kill_times)}")
