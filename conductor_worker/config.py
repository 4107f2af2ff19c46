"""Conductor configuration: environment variables prefixed `CONDUCTOR_`, optionally a TOML file.

Precedence: explicit arguments > environment > the file named by `CONDUCTOR_CONFIG_FILE` > defaults.
Nothing AWS-specific (account ids, queue URLs, regions) is hard-coded: it all comes from here.
"""

import hashlib
import os
import re
import socket
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from contracts.alarms import ChainPolicy
from contracts.policies import JobPolicy
from contracts.queues import CONDUCTOR_TASK_QUEUE
from contracts.usage import ModelPrice
from stores.blob_store import BlobStore, open_blob_store

# The file names deploy scripts know (conductor_worker/process/drain.py).
SHUTDOWN_FLAG_NAME = "IS_CONDUCTOR_SHUTTING_DOWN"
READY_FILE_NAME = "CONDUCTOR_READY_FOR_SAFE_SHUTDOWN"
# An HMAC key shorter than this is a typo or a placeholder, not a secret.
MIN_TOKEN_SECRET_CHARS = 32
_REPLICA_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class TokenSecretMissing(ValueError):
    """`conductor serve` without CONDUCTOR_TOKEN_SECRET: replicas would each sign with a secret of their own."""


class Settings(BaseSettings):
    # Nested values by `__`: CONDUCTOR_TICKET_POLICY__MAX_AGENT_ATTEMPTS=5.
    model_config = SettingsConfigDict(env_prefix="CONDUCTOR_", env_nested_delimiter="__", extra="ignore")

    # Temporal
    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "default"
    task_queue: str = CONDUCTOR_TASK_QUEUE
    temporal_ui_url: str = "http://localhost:8233"

    # Where the conductor keeps job files, uploaded bundles, secrets and the dev server's database.
    state_dir: Path = Path(".conductor-state")
    # This conductor replica's name: its own task queue for what must run on its host (a local agent's
    # watch and stop) and its own drain flag and ready file. Empty: `<hostname>-<hash of the state dir>`,
    # the same across restarts on one host, so a restarted conductor takes its host's agents back.
    # Processes sharing a state dir on one host are one replica unless each sets its own.
    replica_id: str = ""

    # Agent gateway (gRPC). `gateway_public_address` is what agents dial; defaults to the listen address.
    # Several replicas: a gRPC target naming them all (`ipv4:a:1,b:2`, or DNS): agents round-robin over them.
    gateway_listen: str = "127.0.0.1:50051"
    gateway_public_address: str = ""
    # Signs per-job agent tokens; every replica needs the same one (from the environment or a secrets
    # manager). Empty: `conductor dev` and an embedded conductor create one once under state_dir;
    # `conductor serve` refuses to start unless generate_token_secret says a single host may do that.
    token_secret: SecretStr = SecretStr("")
    generate_token_secret: bool = False
    token_ttl_seconds: int = 6 * 3600
    heartbeat_interval_seconds: int = 5
    # TLS for the gateway (gRPC) and the REST API (HTTPS); scripts/make-local-ca.sh makes a CA to try it.
    # Certificate and key set: TLS. A client CA as well: mTLS, every agent presents a certificate it signed.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_client_ca_file: Path | None = None
    # Handed to the agents the launcher starts: the CA they verify the gateway with and, for mTLS, their
    # client certificate and key.
    agent_tls_ca_file: Path | None = None
    agent_tls_cert_file: Path | None = None
    agent_tls_key_file: Path | None = None
    # An agent that has not handshaken by then is stopped and relaunched (see max_agent_attempts in the job).
    handshake_timeout_seconds: float = Field(default=120, gt=0)

    # Pool agents' REST API (seed 003), e.g. 0.0.0.0:8080. Empty: off. `pool_join_token` is the shared
    # secret agents register with (registration is refused while it is empty). Agent tokens are signed
    # with the token secret: conductors that share it accept each other's tokens; otherwise an agent that
    # fails over to another conductor registers again there.
    rest_listen: str = ""
    pool_join_token: SecretStr = SecretStr("")

    # Activities each of the process's workers runs at once (the shared queue's, and the replica's own
    # queue's with the local launcher). An agent holds one slot (its result watcher) while it works, on
    # the replica's own worker for a local agent, so this also caps the agents one process supervises.
    max_concurrent_activities: int = Field(default=50, ge=4)

    # Agent launch: `local` (a subprocess of the conductor) or `fargate` (an ECS task; README "Fargate launcher").
    launcher: Literal["local", "fargate"] = "local"
    # Fargate launcher (region and endpoint: the aws_* settings). The task definition is the route's
    # agent_image when it has one, else ecs_task_definition. Container name empty: the definition's only one.
    # Subnets and security groups: comma-separated in the environment (`subnet-a,subnet-b`).
    ecs_cluster: str = ""
    ecs_task_definition: str = ""
    ecs_container_name: str = ""
    ecs_subnets: Annotated[list[str], NoDecode] = []
    ecs_security_groups: Annotated[list[str], NoDecode] = []
    ecs_assign_public_ip: bool = False
    # The local launcher runs every agent in bubblewrap (activities/sandbox.py) and refuses to start without
    # it. `unsafe`, for development only: agents run as plain subprocesses that can read what the conductor
    # can (its state directory, its environment, every job); the logs and each job's history say so.
    sandbox: Literal["bwrap", "unsafe"] = "bwrap"
    # The coding agent the per-job agent runs: the deterministic built-in `demo`, or a real CLI, `codex`
    # (Codex CLI) or `claude` (Claude Code), which reach the model only through the model gateway below.
    coding_agent: Literal["demo", "codex", "claude"] = "demo"
    # The model name the CLI asks for; empty: the CLI's default (codex: gpt-5.5).
    coding_agent_model: str = ""

    # Model gateway (model_gateway/): on the conductor's HTTP server (rest_listen; when that is empty and
    # a CLI coding agent is configured, the gateway's host on a free port). Agents dial
    # `model_gateway_public_url` (default: the bound address). Only the conductor holds the provider keys.
    model_gateway_public_url: str = ""
    # OpenAI-compatible Responses upstream (Codex CLI): OpenAI, Azure OpenAI (`.../openai/v1` with key
    # header `api-key`) or a proxy. `authorization` sends `Bearer <key>`.
    model_openai_url: str = "https://api.openai.com/v1"
    model_openai_api_key: SecretStr = SecretStr("")
    model_openai_key_header: Literal["authorization", "api-key"] = "authorization"
    # Anthropic Messages upstream (Claude Code), key sent as `x-api-key`.
    model_anthropic_url: str = "https://api.anthropic.com/v1"
    model_anthropic_api_key: SecretStr = SecretStr("")
    # Price table for the cost shown with each job's model usage (status, Web UI, ModelCostUsd search
    # attribute): model name (as the provider's answer names it) -> US dollars per million tokens, e.g.
    # CONDUCTOR_MODEL_PRICES='{"gpt-5.5": {"input_per_mtok": 1.25, "cached_input_per_mtok": 0.125,
    # "output_per_mtok": 10}}'. A model not listed costs 0 and is counted as unpriced.
    model_prices: dict[str, ModelPrice] = Field(default_factory=dict, max_length=1000)
    # How long the `steer` update waits for a model request of the running coding CLI to carry the
    # instruction (then its ack says delivered_to_agent).
    steering_delivery_wait_seconds: float = Field(default=30, ge=0)
    # Upstream 429/5xx before the first byte: tries in all, and the longest wait (Retry-After is capped to it).
    model_retry_attempts: int = Field(default=4, ge=1, le=10)
    model_retry_max_wait_seconds: float = Field(default=30, gt=0)
    coding_agent_timeout_seconds: int = 1500

    # Timeouts, relaunches, retries and the `retry` window, per job kind (contracts/policies.py).
    # Serve Prometheus metrics (the SDK's and the conductor's) at http://<this>/metrics; empty: off.
    metrics_listen: str = ""
    # How often the `conductor_jobs{state}` gauge is counted again in Temporal (one request per state).
    metrics_jobs_gauge_seconds: float = Field(default=30, ge=1)
    # Export OpenTelemetry traces over OTLP/HTTP to this URL (e.g. http://otel-collector:4318/v1/traces);
    # empty: off (conductor_worker/process/tracing.py).
    otlp_traces_endpoint: str = ""

    ticket_policy: JobPolicy = JobPolicy()
    incident_policy: JobPolicy = JobPolicy()
    scheduled_policy: JobPolicy = JobPolicy()

    # Incident chains (README "Incident chains"). A running account workflow keeps the policy it started with.
    chain_window_seconds: int = Field(default=3600, gt=0)
    chain_max_age_seconds: int = Field(default=24 * 3600, gt=0)
    chain_on_failed_job: Literal["respawn", "hold"] = "hold"
    chain_max_jobs: int = Field(default=2, ge=1)

    # Ticket -> repository routes (YAML). See README "Routing".
    routes_file: Path = Path("routes.yaml")

    # SQS intake. Empty queue URL: intake is off.
    sqs_queue_url: str = ""
    # Where poison messages go; empty: found from the queue's RedrivePolicy.
    sqs_dlq_url: str = ""
    sqs_wait_seconds: int = Field(default=20, ge=0, le=20)
    sqs_visibility_timeout_seconds: int = Field(default=60, ge=2, le=12 * 3600)
    # While Temporal is unreachable the intake holds the messages it received (visibility extended every
    # half timeout) for at most this long, then releases them to the queue. SQS caps it at 12 hours.
    sqs_max_hold_seconds: int = Field(default=11 * 3600, gt=0, le=12 * 3600)
    # Concurrent long polls; each handles a batch of up to 10 messages at once.
    sqs_pollers: int = Field(default=4, ge=1, le=32)
    aws_region: str = "us-east-1"
    # Set for moto or LocalStack; empty means the real AWS endpoint.
    aws_endpoint_url: str = ""

    # Safe shutdown for deploys (conductor_worker/process/drain.py). Empty paths: the replica's own files,
    # <state_dir>/replicas/<replica>/, so a flag drains one replica and a start clears its own ready file.
    # The deploy writes "true" to the flag file (or sends SIGTERM); the ready file appears once drained.
    shutdown_flag_file: str = ""
    ready_file: str = ""
    # How long running activity tasks get to finish once the worker drains; then they are cancelled.
    drain_timeout_seconds: float = Field(default=30, gt=0)

    # GitHub publisher (and notes on pull requests of failed jobs)
    github_token: SecretStr = SecretStr("")
    github_api_url: str = "https://api.github.com"
    # Webhook intake (conductor_worker/intake/webhooks.py) on the HTTP server at rest_listen. An empty secret turns
    # that source's route off. A GitHub issue labelled `github_trigger_label` becomes a job; with no rule
    # in the routes file it is routed to its own repository, cloned from `github_clone_url`.
    github_webhook_secret: SecretStr = SecretStr("")
    github_trigger_label: str = Field(default="agent", min_length=1, max_length=50)
    github_clone_url: str = "https://github.com/{repo}.git"
    jira_webhook_secret: SecretStr = SecretStr("")

    # Notes on the Jira tickets of failed jobs. Empty URL: no Jira notes. With an email: basic auth with
    # an API token (Jira Cloud); without: the token is a bearer personal access token (Data Center).
    jira_base_url: str = ""
    jira_email: str = ""
    jira_api_token: SecretStr = SecretStr("")

    # One live status comment per job on its ticket (README "Status comments and incident reports"):
    # unset, on for each ticket source with credentials (Jira: jira_base_url; GitHub issues: github_token);
    # false, off (failure notes then go on the ticket as before).
    status_comments: bool | None = None
    # One GitHub issue per incident chain in its routed repository (a route with `github_repo`), with the
    # jobs' outcomes and the alarms; unset: on when github_token is set.
    incident_reports: bool | None = None

    # Agent job logs (conductor_worker/gateway/log_store.py), outside workflow history: a local directory
    # (empty: <state_dir>/logs) or, for conductors on several machines, an S3 bucket (aws_* settings).
    log_store: Literal["local", "s3"] = "local"
    logs_dir: str = ""
    logs_s3_bucket: str = ""
    logs_s3_prefix: str = "logs/"

    # Staged task files, agents' bundles and whole ticket descriptions (stores/blob_store.py): a local
    # directory (empty: <state_dir>/blobs; one host) or an S3 bucket (aws_* settings) that every replica
    # shares. With s3, agents get presigned URLs valid this long and move bulk bytes to S3 directly.
    blob_store: Literal["local", "s3"] = "local"
    blob_dir: str = ""
    blob_s3_bucket: str = ""
    blob_s3_prefix: str = "blobs/"
    blob_url_expiry_seconds: int = Field(default=3600, ge=60, le=7 * 24 * 3600)

    # Bounds on what agents and clients send (README "Limits"); each refusal names its setting.
    # One attempt's stored log; lines past it are counted, not stored.
    max_log_bytes_per_attempt: int = Field(default=256 * 2**20, gt=0)
    # One uploaded git bundle (the agent's work); refused past it, before `git bundle verify`.
    max_bundle_bytes: int = Field(default=512 * 2**20, gt=0)
    # One gRPC message received by the gateway (RESOURCE_EXHAUSTED past it); bundles come in chunks.
    grpc_max_receive_bytes: int = Field(default=4 * 2**20, gt=0)
    # One HTTP request body on the REST API, checked before it is parsed or authenticated (413 past it).
    rest_max_body_bytes: int = Field(default=1 * 2**20, gt=0)
    # The per-job agent's spill file of unsent log lines (while the gateway is away); past it, counted.
    agent_log_spill_bytes: int = Field(default=512 * 2**20, ge=4096)
    # The result's summary and each output tail, as stored and carried in workflow history (cut past it).
    max_result_text_chars: int = Field(default=16_000, gt=0)

    @field_validator("token_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if 0 < len(value.get_secret_value()) < MIN_TOKEN_SECRET_CHARS:
            raise ValueError(f"CONDUCTOR_TOKEN_SECRET needs at least {MIN_TOKEN_SECRET_CHARS} characters")
        return value

    @field_validator("replica_id")
    @classmethod
    def _queue_safe(cls, value: str) -> str:
        if value and not _REPLICA_ID.fullmatch(value):
            raise ValueError(
                "CONDUCTOR_REPLICA_ID: 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
            )
        return value

    @field_validator("ecs_subnets", "ecs_security_groups", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("CONDUCTOR_CONFIG_FILE")
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)

    @property
    def agent_heartbeat_timeout_seconds(self) -> float:
        """How long an agent may say nothing: three of its heartbeat intervals (the await activity's
        heartbeat timeout, activities/agent_results.py)."""
        return 3.0 * self.heartbeat_interval_seconds

    @property
    def model_gateway_needed(self) -> bool:
        return self.coding_agent != "demo"

    @property
    def webhooks_enabled(self) -> bool:
        return bool(
            self.github_webhook_secret.get_secret_value() or self.jira_webhook_secret.get_secret_value()
        )

    @property
    def status_comment_sources(self) -> frozenset[str]:
        if self.status_comments is False:
            return frozenset()
        sources = {"jira"} if self.jira_base_url else set()
        if self.github_token.get_secret_value():
            sources.add("github")
        return frozenset(sources)

    @property
    def incident_reports_enabled(self) -> bool:
        return self.incident_reports is not False and bool(self.github_token.get_secret_value())

    @property
    def agent_gateway_address(self) -> str:
        return self.gateway_public_address or self.gateway_listen

    def job_policies(self) -> dict[str, JobPolicy]:
        return {
            "ticket": self.ticket_policy,
            "incident": self.incident_policy,
            "scheduled": self.scheduled_policy,
        }

    def chain_policy(self) -> ChainPolicy:
        return ChainPolicy(
            window=timedelta(seconds=self.chain_window_seconds),
            max_age=timedelta(seconds=self.chain_max_age_seconds),
            on_failed_job=self.chain_on_failed_job,
            max_jobs_per_chain=self.chain_max_jobs,
        )

    @property
    def jobs_dir(self) -> Path:
        return self.state_dir / "jobs"

    @property
    def blobs_dir(self) -> Path:
        """The `local` blob store's directory (stores/blob_store.py)."""
        return Path(self.blob_dir) if self.blob_dir else self.state_dir / "blobs"

    def open_blob_store(self) -> BlobStore:
        return open_blob_store(
            self.blob_store,
            self.blobs_dir,
            bucket=self.blob_s3_bucket,
            prefix=self.blob_s3_prefix,
            region=self.aws_region,
            endpoint_url=self.aws_endpoint_url,
        )

    @property
    def logs_path(self) -> Path:
        return Path(self.logs_dir) if self.logs_dir else self.state_dir / "logs"

    @property
    def replica(self) -> str:
        if self.replica_id:
            return self.replica_id
        state = hashlib.sha256(str(self.state_dir.resolve()).encode()).hexdigest()[:8]
        host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:40].strip("-._") or "host"
        return f"{host}-{state}"

    @property
    def host_task_queue(self) -> str:
        """This replica's own task queue (Temporal's worker-specific task queue pattern)."""
        return f"{self.task_queue}/host/{self.replica}"

    @property
    def replica_dir(self) -> Path:
        return self.state_dir / "replicas" / self.replica

    @property
    def shutdown_flag_path(self) -> Path:
        return (
            Path(self.shutdown_flag_file)
            if self.shutdown_flag_file
            else self.replica_dir / SHUTDOWN_FLAG_NAME
        )

    @property
    def ready_path(self) -> Path:
        return Path(self.ready_file) if self.ready_file else self.replica_dir / READY_FILE_NAME

    def check_token_secret(self) -> None:
        """For `conductor serve`: the secret comes from the environment unless one host may generate it."""
        if not self.token_secret.get_secret_value() and not self.generate_token_secret:
            raise TokenSecretMissing(
                "set CONDUCTOR_TOKEN_SECRET (at least 32 characters, the same on every replica), or "
                "CONDUCTOR_GENERATE_TOKEN_SECRET=true for a single host that keeps one in its state dir"
            )

    def signing_secret(self) -> bytes:
        """The token secret: configured, or (dev, one host) created once (0600) under state_dir."""
        configured = self.token_secret.get_secret_value()
        if configured:
            return configured.encode()
        path = self.state_dir / "token-secret"
        if not path.exists():
            # Written whole to a temporary file, then linked into place: conductor processes starting
            # together on one state dir all end up with the one secret that won, never a half-written one.
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".token-secret-")
            try:
                with os.fdopen(fd, "w") as f:
                    f.write(os.urandom(32).hex())
                os.link(tmp, path)
            except FileExistsError:
                pass
            finally:
                os.unlink(tmp)
        return path.read_text().strip().encode()
