"""Process settings, read from ``JOBFORGE_*`` environment variables (and an optional ``.env``).

Nothing here connects to anything; building a ``Settings`` is cheap and side-effect free.
Feature flags are *not* settings: they are read at call time by :mod:`shared.flags`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_TASK_QUEUE = "jobforge"


class Settings(BaseSettings):
    """Where JobForge's services are and how its processes behave."""

    model_config = SettingsConfigDict(env_prefix="JOBFORGE_", env_file=".env", extra="ignore")

    #: home of the embedded stack: SQLite file of Temporal, pgdata, the state file, artifacts
    home: Path = Path(".jobforge")

    #: ``host:port`` of the Temporal frontend (unset with a running ``jobforge dev``: its state file names it)
    temporal_address: str = "127.0.0.1:7233"
    #: the Temporal namespace every run, Schedule and search attribute lives in
    temporal_namespace: str = "default"
    #: connect to Temporal over TLS (Temporal Cloud, a TLS-terminated cluster)
    temporal_tls: bool = False
    #: CA bundle that signs the Temporal server's certificate; unset = the system roots
    temporal_tls_ca: Path | None = None
    #: client certificate for mTLS (with ``temporal_tls_key``)
    temporal_tls_cert: Path | None = None
    #: private key of the mTLS client certificate
    temporal_tls_key: Path | None = None
    #: Temporal Cloud API key, sent as a bearer token (set ``JOBFORGE_TEMPORAL_TLS=1`` with it)
    temporal_api_key: SecretStr | None = None

    #: ``postgresql+psycopg://...``; unset means the embedded PostgreSQL under ``home/pgdata``
    database_url: SecretStr | None = None
    #: connections per pool of each process (SQLAlchemy's, plus 10 overflow, and the raw one of the gate)
    database_pool_size: int = Field(default=5, ge=1)

    #: the task queue of templates that do not name their own
    task_queue: str = DEFAULT_TASK_QUEUE
    #: task queues one worker serves; empty = every queue a registered template uses
    worker_task_queues: Annotated[list[str], NoDecode] = Field(default_factory=list)
    #: activities one worker runs at once (verify steps are the heavy ones)
    worker_max_concurrent_activities: int = Field(default=20, ge=1)
    #: Temporal's own default: a workflow task is cheap, and one running a local activity (event
    #: routing, run bookkeeping) holds its slot until the activity is done, so 20 starved the router
    worker_max_concurrent_workflow_tasks: int = Field(default=100, ge=1)
    #: routers per tenant (``jobforge.event.router``): one routes a tenant's events on one worker at a
    #: time, so on one core; more spread a very busy tenant over more workers
    event_router_shards: int = Field(default=1, ge=1, le=64)
    #: how long in-flight activities get to finish when a worker is asked to stop
    worker_graceful_shutdown_seconds: float = Field(default=30.0, ge=0)

    #: how long a process keeps store overrides of feature flags before reading them again
    flag_override_ttl_seconds: float = Field(default=2.0, ge=0, le=5)

    #: how often a worker captures the histories of closed runs for replay bundles (REPLAY_PACK_ENABLED)
    history_capture_interval_seconds: float = Field(default=2.0, gt=0)
    #: how often a worker looks for runs left ``queued`` whose workflow closed before admission, and how
    #: long a run must have been queued to be looked at (shared/stale_runs.py)
    queued_sweep_interval_seconds: float = Field(default=60.0, gt=0)
    queued_sweep_after_seconds: float = Field(default=60.0, ge=0)

    #: extra modules that register job templates (comma separated), e.g. a product's own pack
    template_modules: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # -- the security gate (docs/security.md) --
    #: payload limits (JOBFORGE_SECURITY_VALIDATION_ENABLED turns them on)
    max_payload_bytes: int = Field(default=1_048_576, ge=1)
    #: nesting depth of objects and arrays
    max_payload_depth: int = Field(default=10, ge=1)
    #: characters in one string
    max_string_chars: int = Field(default=100_000, ge=1)
    #: items in one array
    max_array_items: int = Field(default=10_000, ge=1)
    #: objects and arrays in one request body, counted before it is parsed (each costs an allocation; a
    #: plain 1 MB document of records has about 15,000)
    max_payload_containers: int = Field(default=50_000, ge=1)
    #: event dedupe window on (tenant_id, event_id, event_type)
    dedupe_ttl_seconds: float = Field(default=300.0, gt=0)
    #: per tenant (JOBFORGE_RATE_LIMITING_ENABLED turns it on); burst defaults to the limit
    rate_limit_per_minute: int = Field(default=100, ge=1)
    #: requests a tenant may send at once before the per-minute pace applies; unset = the per-minute limit
    rate_limit_burst: int | None = Field(default=None, ge=1)
    #: optional second limit per (tenant, actor)
    rate_limit_actor_per_minute: int | None = Field(default=None, ge=1)
    #: refused answers (4xx) a caller (API key, else client address) gets at once in a row before its
    #: refusals are paced (docs/security.md, "Pacing refused callers")
    refusal_pacing_burst: int = Field(default=20, ge=1)
    #: refused answers per minute a caller gets at once after that burst
    refusal_pacing_per_minute: float = Field(default=60.0, gt=0)
    #: the longest a paced caller's refusal is held before it is answered (while paced, the caller's
    #: requests are also served one at a time); 0 turns pacing off
    refusal_pacing_max_hold_seconds: float = Field(default=2.0, ge=0, le=60)
    #: refusals held plus paced requests waiting, at most, per jobforge-api process (each holds a
    #: connection); over it a refusal is answered at once and its connection closed
    refusal_pacing_max_held: int = Field(default=256, ge=0)
    #: HMAC key of policy tokens and admission receipts; unset = ``home/signing.key`` (created once)
    signing_key: SecretStr | None = None
    #: how long an admission receipt (gate judged, run not yet admitted) stays valid
    receipt_ttl_seconds: int = Field(default=3600, ge=5, le=86_400)
    #: how long a policy token (``jobforge tokens issue``) stays valid
    policy_token_ttl_seconds: int = Field(default=900, ge=5, le=86_400)
    #: address jobforge-api binds
    api_host: str = "127.0.0.1"
    #: port of jobforge-api
    api_port: int = Field(default=8080, ge=0, le=65535)
    #: who an operator request (SDK Temporal-direct, raw Temporal start) is granted
    operator_scopes: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["*:*"])

    # -- the console (jobforge-api at /ui; docs/console.md) --
    #: operator sign-in (every tenant, the flags); unset = none. ``jobforge dev`` makes a fresh one at each start
    console_operator_token: SecretStr | None = None
    #: how long a console sign-in lasts
    console_session_ttl_seconds: int = Field(default=28_800, ge=60, le=604_800)
    #: mark the session cookie Secure; unset = when the request came over https
    console_secure_cookies: bool | None = None
    #: the Temporal Web UI's base URL, for links from a run to its workflow; empty = no links
    temporal_ui_url: str = Field(default="", pattern=r"^(|https?://\S+)$")

    # -- the verify pack (docs/verify-pack.md) --
    #: directories repositories may be verified in (comma separated); default: the worker's working directory
    verify_allowed_roots: Annotated[list[Path], NoDecode] = Field(default_factory=lambda: [Path(".")])
    #: the task queue of verify runs and their steps; empty = ``<task_queue>-verify``
    verify_task_queue: str = ""
    #: a step that stops heartbeating this long is retried (on another worker)
    verify_heartbeat_timeout_seconds: float = Field(default=30.0, gt=0)
    #: between SIGTERM and SIGKILL of a step's process group
    verify_kill_grace_seconds: float = Field(default=5.0, ge=0)
    #: ``auto`` = bubblewrap when it works here, ``off``, ``required`` (refuse to run unsandboxed)
    verify_sandbox: str = Field(default="auto", pattern="^(auto|off|required)$")
    #: download caches (pip, npm) shared by verify installs; unset = ``home/verify/cache``
    verify_cache_dir: Path | None = None
    #: the environments verify installs built, kept per install key under ``<verify cache>/envs`` so that a
    #: warm run starts from them; least recently used entries go beyond this size; 0 = keep none
    verify_env_cache_max_mb: int = Field(default=8192, ge=0)
    #: the artifact store (content-addressed, tenant-scoped); unset = ``home/artifacts``
    artifact_dir: Path | None = None

    # -- observability (docs/operations.md) --
    #: ``host:port`` of jobforge-worker's Prometheus endpoint (``/metrics``); empty = none
    metrics_bind: str = Field(default="", pattern=r"^(|.+:\d{1,5})$")
    #: ``host:port`` of jobforge-api's Prometheus endpoint (``/metrics``); empty = none
    api_metrics_bind: str = Field(default="", pattern=r"^(|.+:\d{1,5})$")
    #: how often a worker with metrics on refreshes its task queues' backlog gauge (DescribeTaskQueue)
    queue_depth_interval_seconds: float = Field(default=15.0, gt=0)
    #: OTLP/HTTP collector that receives traces, e.g. ``http://127.0.0.1:4318``; empty = tracing off
    otlp_endpoint: str = ""

    #: structlog level of every process (DEBUG, INFO, WARNING, ERROR)
    log_level: str = "INFO"
    #: ``auto`` = console on a TTY, JSON otherwise
    log_format: str = "auto"

    @field_validator("worker_task_queues", "template_modules", "operator_scopes", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("console_operator_token")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            return None  # set but empty (a compose default): no operator sign-in
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("the console operator token must be at least 32 characters (a random secret)")
        return value

    @property
    def state_file(self) -> Path:
        return self.home / "state.json"

    @field_validator("verify_allowed_roots", mode="before")
    @classmethod
    def _comma_separated_paths(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @property
    def verify_queue(self) -> str:
        return self.verify_task_queue or f"{self.task_queue}-verify"

    @property
    def artifact_root(self) -> Path:
        return self.artifact_dir if self.artifact_dir is not None else self.home / "artifacts"

    def database_url_value(self) -> str | None:
        return self.database_url.get_secret_value() if self.database_url else None
