"""The only place a Temporal Worker is assembled: workflows plus activity objects built once."""

from datetime import timedelta

import github
from temporalio.client import Client
from temporalio.worker import Worker

from activities.agent_results import AgentResultWatcher
from activities.launch_local import LocalLauncher
from activities.publish_git import LocalGitPublisher
from activities.publish_github import GithubPublisher
from activities.recorder import Recorder
from activities.routing import Router
from activities.task_files import TaskFileStager
from conductor_worker.config import Settings
from workflows.agent_job import AgentJobWorkflow
from workflows.incident_chain import IncidentChainWorkflow
from workflows.ticket import TicketWorkflow

WORKFLOWS = [TicketWorkflow, IncidentChainWorkflow, AgentJobWorkflow]


def github_factory(settings: Settings):
    def make() -> github.Github:
        token = settings.github_token.get_secret_value()
        return github.Github(
            base_url=settings.github_api_url,
            auth=github.Auth.Token(token) if token else None,
        )

    return make


def build_activities(settings: Settings) -> list:
    launcher = LocalLauncher(settings)
    watcher = AgentResultWatcher(
        settings.jobs_dir,
        launcher,
        heartbeat_interval_seconds=settings.heartbeat_interval_seconds,
        handshake_timeout_seconds=settings.handshake_timeout_seconds,
    )
    github_publisher = GithubPublisher(github_factory(settings), settings.github_token.get_secret_value())
    router = Router(settings.routes_file)
    return [
        router.route_ticket,
        router.route_incident,
        TaskFileStager(settings.jobs_dir).stage_task_files,
        launcher.launch_agent,
        launcher.stop_agent,
        watcher.await_agent_result,
        LocalGitPublisher().publish_local,
        github_publisher.publish_github,
    ]


def build_recording_worker(client: Client, settings: Settings, recorder: Recorder) -> Worker:
    """The real workflows and routing, with the recorder in place of launcher and publishers.

    `conductor simulate` and the time-skipping tests run this: every decision is real, no agent starts.
    """
    router = Router(settings.routes_file)
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=WORKFLOWS,
        activities=[router.route_ticket, router.route_incident, *recorder.activities()],
    )


def build_worker(client: Client, settings: Settings, task_queue: str | None = None) -> Worker:
    return Worker(
        client,
        task_queue=task_queue or settings.task_queue,
        workflows=WORKFLOWS,
        activities=build_activities(settings),
        max_concurrent_activities=settings.max_concurrent_activities,
        # Drain: in-flight activities get this long to finish; agent watchers hand over at once.
        graceful_shutdown_timeout=timedelta(seconds=settings.drain_timeout_seconds),
    )
