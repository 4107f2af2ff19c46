"""The `fargate` launcher: the agent as an ECS task on AWS Fargate (boto3 RunTask, awsvpc).

Same activity names and `is_alive` probe as the local launcher, so the job workflow and the result
watcher do not know which one runs. The container gets only the agent's environment as overrides
(gateway address, per-job token, coding-agent settings, TLS file paths); anything else it sees comes
from the task definition, which must therefore hold no GitHub, Temporal or cloud credentials.

One job attempt starts at most one task, in three layers, because each alone has a gap: the `agent.json`
record in the job attempt dir (as the local launcher writes), a lookup by `startedBy` (the conductor died
between RunTask and the record; moto and ECS both filter ListTasks by it) and ECS's `clientToken`
(ListTasks is eventually consistent on real ECS; moto ignores the token). ECS answers a repeated token
with the first answer only if every parameter is the same, and refuses it otherwise (ConflictException), so
the request, both tokens included, is written to `run-task.json` before it is sent and a retry resends it
as is. The clientToken is random rather than derived from the attempt: after an answer without a task
(no capacity), the same token would only fetch the same answer, so the next try sends a new request.
Unlike the local launcher, a task that stopped without a result is not started again within its attempt
(the token would return the stopped one): the result watcher reports the crash and the job workflow
relaunches it as a new attempt with a new token.
"""

import asyncio
import hashlib
import json
import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.agent_env import agent_job_environment
from activities.launcher_config import AgentEnvironment, EcsConfig, FargateLauncherConfig
from contracts.activity_io import LaunchAgentInput, LaunchAgentResult, StopAgentInput
from security.tokens import mint_token
from stores.job_store import JobAttemptDir, write_atomic

log = logging.getLogger(__name__)

AGENT_ID_PREFIX = "fargate:"
# The image's entry point may differ; the command is what makes the container a per-job agent.
AGENT_COMMAND = ["conductor-agent", "run"]
# DescribeTasks is rate limited per account and the watcher asks every half second: answer from a
# status at most this old.
STATUS_TTL_SECONDS = 10.0
# ECS limits: startedBy holds up to 36 characters, a stop reason 255, a tag value 256.
_STARTED_BY_PREFIX = "conductor-"
_STARTED_BY_LENGTH = 36
_THROTTLED = {"ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded"}
_HINTS = {
    "ClusterNotFoundException": "check CONDUCTOR_ECS_CLUSTER and CONDUCTOR_AWS_REGION",
    "InvalidParameterException": "check CONDUCTOR_ECS_SUBNETS, CONDUCTOR_ECS_SECURITY_GROUPS and the task "
    "definition (networkMode awsvpc, FARGATE compatible)",
    "AccessDeniedException": "the conductor's role needs ecs:RunTask, ecs:ListTasks, ecs:DescribeTasks, "
    "ecs:StopTask, ecs:DescribeTaskDefinition, ecs:TagResource and iam:PassRole for the task's roles",
}


def ecs_client(ecs: EcsConfig):
    return boto3.client(
        "ecs",
        region_name=ecs.region,
        endpoint_url=ecs.endpoint_url or None,
        # Throttling is retried here first, then by Temporal (ecs_error marks it retryable).
        config=Config(retries={"mode": "standard"}),
    )


def agent_environment(agent: AgentEnvironment, token: str) -> dict[str, str]:
    """Everything the conductor puts into the container. The model key for `codex` is not here: it
    belongs in the task definition's `secrets`, since overrides are readable through DescribeTasks."""
    return agent_job_environment(agent, token)


def started_by(job_id: str, attempt: int) -> str:
    """Names one job attempt within ECS's 36 characters, so a retried launch can find its task."""
    key = hashlib.sha256(f"{job_id}#{attempt}".encode()).hexdigest()
    return _STARTED_BY_PREFIX + key[: _STARTED_BY_LENGTH - len(_STARTED_BY_PREFIX)]


def run_task_request(
    config: FargateLauncherConfig,
    input: LaunchAgentInput,
    task_definition: str,
    container: str,
    token: str,
    client_token: str,
) -> dict:
    """The RunTask keyword arguments for one job attempt."""
    environment = agent_environment(config.launch.agent, token)
    ecs = config.ecs
    return {
        "cluster": ecs.cluster,
        "taskDefinition": task_definition,
        "launchType": "FARGATE",
        "count": 1,
        "networkConfiguration": {
            "awsvpcConfiguration": {
                "subnets": list(ecs.subnets),
                # Sent even when empty: ECS then uses the VPC's default group (and moto needs the key).
                "securityGroups": list(ecs.security_groups),
                "assignPublicIp": "ENABLED" if ecs.assign_public_ip else "DISABLED",
            }
        },
        "overrides": {
            "containerOverrides": [
                {
                    "name": container,
                    "command": AGENT_COMMAND,
                    "environment": [{"name": k, "value": v} for k, v in environment.items()],
                }
            ]
        },
        "clientToken": client_token,
        "startedBy": started_by(input.job_id, input.attempt),
        # For people in the console and for cost reports; the lookup uses startedBy.
        "tags": [
            {"key": "conductor:job-id", "value": input.job_id[:256]},
            {"key": "conductor:attempt", "value": str(input.attempt)},
        ],
    }


def _code_and_message(err: ClientError) -> tuple[str, str]:
    error = err.response.get("Error", {})
    return error.get("Code", ""), error.get("Message", "")


def ecs_error(err: Exception, call: str) -> ApplicationError:
    """Throttling, 5xx and connection trouble are retried; anything else is a setting to fix."""
    if not isinstance(err, ClientError):
        return ApplicationError(f"ECS {call} failed: {err}", type="EcsUnavailable")
    code, message = _code_and_message(err)
    status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    if code in _THROTTLED or code == "ServerException" or status >= 500:
        return ApplicationError(f"ECS {call} failed: {code}: {message}", type="EcsUnavailable")
    hint = _HINTS.get(code, 'check the Fargate launcher\'s settings (README "Fargate launcher")')
    return ApplicationError(
        f"ECS {call} refused: {code}: {message}; {hint}", type="FargateMisconfigured", non_retryable=True
    )


def _misconfigured(message: str) -> ApplicationError:
    return ApplicationError(message, type="FargateMisconfigured", non_retryable=True)


def task_arn(agent_id: str) -> str:
    return agent_id.removeprefix(AGENT_ID_PREFIX)


class FargateLauncher:
    def __init__(self, config: FargateLauncherConfig, ecs) -> None:
        self._config = config
        self._launch_config = config.launch
        self._ecs_config = config.ecs
        self._ecs = ecs
        self._secret = config.launch.token_secret
        # task ARN -> (monotonic time of the DescribeTasks answer, alive); STOPPED is final.
        self._seen: dict[str, tuple[float, bool]] = {}
        self._refreshing: set[str] = set()
        self._lock = threading.Lock()
        self._describer = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ecs-describe")

    def is_alive(self, agent_id: str) -> bool:
        """lastStatus is not STOPPED, as of a DescribeTasks at most STATUS_TTL_SECONDS old.

        Called from the event loop (the result watcher, the drain): only an agent not seen before costs
        a blocking call; a stale answer is refreshed in a background thread and served meanwhile.
        """
        arn = task_arn(agent_id)
        with self._lock:
            seen = self._seen.get(arn)
            stale = seen is not None and seen[1] and time.monotonic() - seen[0] > STATUS_TTL_SECONDS
            if stale and arn not in self._refreshing:
                self._refreshing.add(arn)
                self._describer.submit(self._refresh, arn)
        return self._refresh(arn) if seen is None else seen[1]

    def _refresh(self, arn: str) -> bool:
        try:
            alive = self._task_status(arn) not in (None, "STOPPED")
        except (ClientError, BotoCoreError) as err:
            # Unknown counts as alive: the watcher's heartbeat checks still catch a dead agent.
            log.warning("could not describe ECS task %s: %s", arn, err)
            alive = True
        with self._lock:
            self._seen[arn] = (time.monotonic(), alive)
            self._refreshing.discard(arn)
        return alive

    def _task_status(self, arn: str) -> str | None:
        """The task's lastStatus; None once ECS has forgotten it (or never knew it)."""
        tasks = self._ecs.describe_tasks(cluster=self._ecs_config.cluster, tasks=[arn])["tasks"]
        return tasks[0]["lastStatus"] if tasks else None

    @activity.defn(name="launch_agent")
    async def launch_agent(self, input: LaunchAgentInput) -> LaunchAgentResult:
        job = JobAttemptDir(self._launch_config.jobs_dir, input.job_id, input.attempt)
        try:
            agent_id = await asyncio.to_thread(self._launch, input, job)
        except (ClientError, BotoCoreError) as err:
            raise ecs_error(err, "launch") from err
        return LaunchAgentResult(
            agent_id=agent_id,
            launcher="fargate",
            heartbeat_timeout_seconds=self._launch_config.heartbeat_timeout_seconds,
        )

    def _launch(self, input: LaunchAgentInput, job: JobAttemptDir) -> str:
        record = job.root / "agent.json"
        if record.exists():
            return json.loads(record.read_text())["agent_id"]
        running = self._ecs.list_tasks(
            cluster=self._ecs_config.cluster,
            startedBy=started_by(input.job_id, input.attempt),
            desiredStatus="RUNNING",
        )["taskArns"]
        if running:
            agent_id = AGENT_ID_PREFIX + running[0]
            log.info(
                "found agent %s already running for %s attempt %d", agent_id, input.job_id, input.attempt
            )
        else:
            agent_id = AGENT_ID_PREFIX + self._run_task(input, job)
            log.info("launched agent %s for %s attempt %d", agent_id, input.job_id, input.attempt)
        write_atomic(record, json.dumps({"agent_id": agent_id, "started_at": time.time()}).encode())
        return agent_id

    def _run_task(self, input: LaunchAgentInput, job: JobAttemptDir) -> str:
        sent = job.root / "run-task.json"
        if sent.exists():
            request = json.loads(sent.read_text())
        else:
            task_definition, container = self._resolve_task_definition(input)
            token = mint_token(
                self._secret, input.job_id, input.attempt, self._launch_config.token_ttl_seconds
            )
            request = run_task_request(
                self._config, input, task_definition, container, token, uuid.uuid4().hex
            )
            # Written with mode 0600 (it holds the agent's token), like the token secret beside it.
            write_atomic(sent, json.dumps(request).encode())
        response = self._ecs.run_task(**request)
        if not response.get("tasks"):
            # Capacity (RESOURCE:*) and similar placement failures pass; Temporal retries the launch
            # with a new request.
            sent.unlink()
            reasons = "; ".join(
                f"{f.get('reason')} {f.get('detail', '')}".strip() for f in response["failures"]
            )
            raise ApplicationError(f"ECS RunTask started no task: {reasons}", type="EcsUnavailable")
        return response["tasks"][0]["taskArn"]

    def _resolve_task_definition(self, input: LaunchAgentInput) -> tuple[str, str]:
        """The task definition's ARN (the revision checked here is the one run) and the agent's container."""
        name = input.agent_image or self._ecs_config.task_definition
        if not name:
            raise _misconfigured(
                f"no task definition for {input.job_id}: set CONDUCTOR_ECS_TASK_DEFINITION "
                "or agent_image on the job's route"
            )
        source = "the route's agent_image" if input.agent_image else "CONDUCTOR_ECS_TASK_DEFINITION"
        try:
            definition = self._ecs.describe_task_definition(taskDefinition=name)["taskDefinition"]
        except ClientError as err:
            code, message = _code_and_message(err)
            if code != "ClientException":
                raise
            raise _misconfigured(
                f"task definition {name!r} ({source}) not found in {self._ecs_config.region}: "
                f"{message}; fix {source}"
            ) from err
        if definition.get("networkMode") != "awsvpc":
            raise _misconfigured(
                f"task definition {name!r} ({source}) must use networkMode awsvpc for Fargate"
            )
        containers = [c["name"] for c in definition["containerDefinitions"]]
        wanted = self._ecs_config.container_name
        if wanted and wanted not in containers:
            raise _misconfigured(
                f"task definition {name!r} has no container {wanted!r} (CONDUCTOR_ECS_CONTAINER_NAME); "
                f"it has {containers}"
            )
        if not wanted and len(containers) != 1:
            raise _misconfigured(
                f"task definition {name!r} has containers {containers}: set CONDUCTOR_ECS_CONTAINER_NAME "
                "to the agent's"
            )
        return definition["taskDefinitionArn"], wanted or containers[0]

    @activity.defn(name="stop_agent")
    async def stop_agent(self, input: StopAgentInput) -> None:
        """StopTask with the reason; a task already stopped (or forgotten by ECS) is fine."""
        arn = task_arn(input.agent_id)
        reason = f"conductor: {input.reason or 'job over'}"[:255]
        try:
            await asyncio.to_thread(
                self._ecs.stop_task, cluster=self._ecs_config.cluster, task=arn, reason=reason
            )
        except ClientError as err:
            code, message = _code_and_message(err)
            # ECS's answer for a task it no longer knows: "The referenced task was not found."
            if code != "InvalidParameterException" or "not found" not in message:
                raise ecs_error(err, "StopTask") from err
        except BotoCoreError as err:
            raise ecs_error(err, "StopTask") from err
        log.info("stopped agent %s (%s)", input.agent_id, reason)
        with self._lock:
            # The next is_alive asks ECS again instead of trusting the answer from before the stop.
            self._seen.pop(arn, None)
