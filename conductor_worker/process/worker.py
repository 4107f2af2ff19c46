"""The only place a Temporal Worker is assembled: workflows plus activity objects built once."""

from datetime import timedelta

import github
from temporalio.client import Client
from temporalio.worker import Worker

from activities.agent_results import AgentResultWatcher
from activities.claims import ClaimChecks
from activities.failure_notes import FailureNotes, JiraAccess
from activities.incident_report import IncidentReports
from activities.launch_fargate import FargateLauncher, ecs_client
from activities.launch_local import LocalLauncher
from activities.pool_dispatch import submit_script_task
from activities.publish_git import LocalGitPublisher
from activities.publish_github import GithubPublisher
from activities.recorder import Recorder
from activities.routing import Router
from activities.status_comment import StatusComments
from activities.steering import SteeringMailbox
from activities.task_files import TaskFileStager
from conductor_worker.config import Settings
from conductor_worker.process.launcher_settings import fargate_launcher_config, local_launcher_config
from conductor_worker.process.task_failures import WorkflowTaskFailures
from stores.attempts import StagedAttempts
from stores.mailbox import JobMailbox
from workflows.agent_job import AgentJobWorkflow
from workflows.agent_pool import AgentPoolWorkflow
from workflows.incident_chain import IncidentChainWorkflow
from workflows.repo_claim import RepoClaimWorkflow
from workflows.scheduled_job import ScheduledJobWorkflow
from workflows.script_task import ScriptTaskWorkflow
from workflows.ticket import TicketWorkflow

WORKFLOWS = [
    TicketWorkflow,
    IncidentChainWorkflow,
    AgentJobWorkflow,
    ScheduledJobWorkflow,
    RepoClaimWorkflow,
    AgentPoolWorkflow,
    ScriptTaskWorkflow,
]


def github_factory(settings: Settings):
    def make() -> github.Github:
        token = settings.github_token.get_secret_value()
        return github.Github(
            base_url=settings.github_api_url,
            auth=github.Auth.Token(token) if token else None,
        )

    return make


def jira_access(settings: Settings) -> JiraAccess | None:
    if not settings.jira_base_url:
        return None
    return JiraAccess(settings.jira_base_url, settings.jira_api_token.get_secret_value(), settings.jira_email)


def operations_activities(client: Client, settings: Settings, task_queue: str) -> list:
    """Repository claims, routing, steering, failure notes, status comments and incident reports: the same
    in the real and recording workers."""
    claims = ClaimChecks(client, task_queue)
    router = Router(
        settings.routes_file,
        settings.job_policies(),
        github_clone_url=settings.github_clone_url,
        status_comment_sources=settings.status_comment_sources,
    )
    notes = FailureNotes(jira_access(settings), github_factory(settings))
    status = StatusComments(
        jira_access(settings),
        github_factory(settings),
        client,
        settings.temporal_ui_url,
        settings.temporal_namespace,
    )
    wait = settings.steering_delivery_wait_seconds if settings.model_gateway_needed else 0.0
    steering = SteeringMailbox(JobMailbox(settings.open_blob_store()), wait)
    return [
        router.route_ticket,
        router.route_incident,
        claims.request_claim,
        claims.closed_workflows,
        steering.deliver_steering,
        steering.await_steering_delivery,
        steering.deliver_later_alarms,
        notes.leave_failure_note,
        status.post_status_comment,
        IncidentReports(github_factory(settings)).report_incident,
    ]


def build_launcher(settings: Settings) -> LocalLauncher | FargateLauncher:
    """The configured launcher; `fargate` refuses to start without its settings (FargateConfigError)."""
    if settings.launcher == "fargate":
        config = fargate_launcher_config(settings)
        return FargateLauncher(config, ecs_client(config.ecs))
    return LocalLauncher(local_launcher_config(settings), settings.open_blob_store())


def build_activities(client: Client, settings: Settings, task_queue: str) -> tuple[list, list]:
    """(activities for the shared task queue, activities for this replica's own host queue)."""
    launcher = build_launcher(settings)
    # Completed by the agent gateway (conductor_worker/gateway/agent_channel.py); it only judges a silence.
    watcher = AgentResultWatcher(handshake_timeout_seconds=settings.handshake_timeout_seconds)
    blobs = settings.open_blob_store()
    github_publisher = GithubPublisher(
        github_factory(settings), settings.github_token.get_secret_value(), blobs, settings.max_bundle_bytes
    )
    shared = [
        *operations_activities(client, settings, task_queue),
        TaskFileStager(StagedAttempts(blobs), JobMailbox(blobs)).stage_task_files,
        submit_script_task,
        launcher.launch_agent,
        # Here too: Fargate's agents, and jobs launched before the host queue existed, are watched and
        # stopped from any replica.
        launcher.stop_agent,
        watcher.await_agent_result,
        LocalGitPublisher(blobs, settings.max_bundle_bytes).publish_local,
        github_publisher.publish_github,
    ]
    # A local agent lives on the host that launched it: only that process can see and stop it.
    on_host = [launcher.stop_agent, watcher.await_agent_result] if isinstance(launcher, LocalLauncher) else []
    return shared, on_host


def build_recording_worker(client: Client, settings: Settings, recorder: Recorder) -> Worker:
    """The real workflows and routing, with the recorder in place of launcher and publishers.

    `conductor simulate` and the time-skipping tests run this: every decision is real, no agent starts.
    """
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=WORKFLOWS,
        activities=[*operations_activities(client, settings, settings.task_queue), *recorder.activities()],
        interceptors=[WorkflowTaskFailures()],
    )


def build_workers(client: Client, settings: Settings) -> list[Worker]:
    """The worker of the shared task queue and, with the local launcher, the one of this replica's own
    queue (Temporal's worker-specific task queue pattern); both share the launcher and the watcher."""
    shared, on_host = build_activities(client, settings, settings.task_queue)
    queues = [(settings.task_queue, WORKFLOWS, shared)]
    if on_host:
        queues.append((settings.host_task_queue, [], on_host))
    return [
        Worker(
            client,
            task_queue=task_queue,
            workflows=workflows,
            activities=activities,
            interceptors=[WorkflowTaskFailures()] if workflows else [],
            max_concurrent_activities=settings.max_concurrent_activities,
            # Drain: in-flight activities get this long to finish; agent watchers hand over at once.
            graceful_shutdown_timeout=timedelta(seconds=settings.drain_timeout_seconds),
        )
        for task_queue, workflows, activities in queues
    ]
