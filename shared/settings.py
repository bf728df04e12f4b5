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

    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    temporal_tls: bool = False
    temporal_tls_ca: Path | None = None
    temporal_tls_cert: Path | None = None
    temporal_tls_key: Path | None = None
    temporal_api_key: SecretStr | None = None

    #: ``postgresql+psycopg://...``; unset means the embedded PostgreSQL under ``home/pgdata``
    database_url: SecretStr | None = None
    database_pool_size: int = Field(default=5, ge=1)

    #: the task queue of templates that do not name their own
    task_queue: str = DEFAULT_TASK_QUEUE
    #: task queues one worker serves; empty = every queue a registered template uses
    worker_task_queues: Annotated[list[str], NoDecode] = Field(default_factory=list)
    worker_max_concurrent_activities: int = Field(default=20, ge=1)
    worker_max_concurrent_workflow_tasks: int = Field(default=20, ge=1)
    #: how long in-flight activities get to finish when a worker is asked to stop
    worker_graceful_shutdown_seconds: float = Field(default=30.0, ge=0)

    #: how long a process keeps store overrides of feature flags before reading them again
    flag_override_ttl_seconds: float = Field(default=2.0, ge=0, le=5)

    #: extra modules that register job templates (comma separated), e.g. a product's own pack
    template_modules: Annotated[list[str], NoDecode] = Field(default_factory=list)

    log_level: str = "INFO"
    #: ``auto`` = console on a TTY, JSON otherwise
    log_format: str = "auto"

    @field_validator("worker_task_queues", "template_modules", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @property
    def state_file(self) -> Path:
        return self.home / "state.json"

    def database_url_value(self) -> str | None:
        return self.database_url.get_secret_value() if self.database_url else None
