"""Process settings, read from ``JOBFORGE_*`` environment variables (and an optional ``.env``).

Nothing here connects to anything; building a ``Settings`` is cheap and side-effect free, and imports
neither pydantic nor anything heavier than the standard library (python-dotenv only when a ``.env``
exists): a command line that only reads the store answers without them (docs/operations.md).
Feature flags are *not* settings: they are read at call time by :mod:`shared.flags`.

Where a value comes from, the first that has it: the keyword arguments of ``Settings(...)``; the
environment (``JOBFORGE_<NAME>``, any case); ``./.env`` (the same names, read with python-dotenv);
the default. A value that cannot be used raises :class:`SettingsError`, naming the variable, what it
must be and the value (secrets never). Conversions from text, as pydantic's lax mode makes them
(tests/unit/test_settings.py checks that a pydantic-settings model of the same settings reads every
value alike):

* ``int``: ASCII digits with an optional sign, ``_`` between digits and surrounding whitespace; a
  fractional part of zeros (``5.0``) is accepted;
* ``float``: what Python's ``float`` reads, in ASCII (``inf`` and ``nan`` included), with ``_`` anywhere
  but first, last or doubled;
* ``bool``: ``1 true t yes y on`` / ``0 false f no n off`` in any case;
* a list: comma separated, each part stripped, empty parts dropped;
* ``Path``, ``str`` and :class:`Secret`: the text as it is.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from pathlib import Path
from typing import Any

DEFAULT_TASK_QUEUE = "jobforge"
#: every setting's variable is this prefix and the setting's name, upper case
ENV_PREFIX = "JOBFORGE_"
#: read from the working directory when it exists; the environment wins over it
ENV_FILE = ".env"


class SettingsError(ValueError):
    """A setting's value cannot be used (it names the variable, what it must be and the value it got)."""


class Secret:
    """A secret setting's value: ``repr``, ``str`` and logs show ``**********``; :meth:`get_secret_value`
    reads it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({str(self)!r})"

    def __str__(self) -> str:
        return "**********" if self._value else ""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __len__(self) -> int:
        return len(self._value)


def setting(default: Any = MISSING, *, factory: Callable[[], Any] | None = None, ge: float | None = None,
            gt: float | None = None, le: float | None = None, pattern: str | None = None) -> Any:
    """A setting with constraints: numbers ``ge`` / ``gt`` / ``le``, text matching ``pattern``."""
    metadata = {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("pattern", pattern)) if v is not None}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(init=False, frozen=True)
class Settings:
    """Where JobForge's services are and how its processes behave."""

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
    temporal_api_key: Secret | None = None

    #: ``postgresql+psycopg://...``; unset means the embedded PostgreSQL under ``home/pgdata``
    database_url: Secret | None = None
    #: connections per pool of each process (SQLAlchemy's, plus 10 overflow, and the raw one of the gate)
    database_pool_size: int = setting(5, ge=1)

    #: the task queue of templates that do not name their own
    task_queue: str = DEFAULT_TASK_QUEUE
    #: task queues one worker serves; empty = every queue a registered template uses
    worker_task_queues: list[str] = setting(factory=list)
    #: activities one worker runs at once (verify steps are the heavy ones)
    worker_max_concurrent_activities: int = setting(20, ge=1)
    #: Temporal's own default: a workflow task is cheap, and one running a local activity (event
    #: routing, run bookkeeping) holds its slot until the activity is done, so 20 starved the router
    worker_max_concurrent_workflow_tasks: int = setting(100, ge=1)
    #: routers per tenant (``jobforge.event.router``): one routes a tenant's events on one worker at a
    #: time, so on one core; more spread a very busy tenant over more workers
    event_router_shards: int = setting(1, ge=1, le=64)
    #: how long in-flight activities get to finish when a worker is asked to stop
    worker_graceful_shutdown_seconds: float = setting(30.0, ge=0)

    #: how long a process keeps store overrides of feature flags before reading them again
    flag_override_ttl_seconds: float = setting(2.0, ge=0, le=5)

    #: how often a worker captures the histories of closed runs for replay bundles (REPLAY_PACK_ENABLED)
    history_capture_interval_seconds: float = setting(2.0, gt=0)
    #: how often a worker looks for runs left ``queued`` whose workflow closed before admission, and how
    #: long a run must have been queued to be looked at (shared/stale_runs.py)
    queued_sweep_interval_seconds: float = setting(60.0, gt=0)
    queued_sweep_after_seconds: float = setting(60.0, ge=0)

    #: extra modules that register job templates (comma separated), e.g. a product's own pack
    template_modules: list[str] = setting(factory=list)

    # -- the security gate (docs/security.md) --
    #: payload limits (JOBFORGE_SECURITY_VALIDATION_ENABLED turns them on)
    max_payload_bytes: int = setting(1_048_576, ge=1)
    #: nesting depth of objects and arrays
    max_payload_depth: int = setting(10, ge=1)
    #: characters in one string
    max_string_chars: int = setting(100_000, ge=1)
    #: items in one array
    max_array_items: int = setting(10_000, ge=1)
    #: objects and arrays in one request body, counted before it is parsed (each costs an allocation; a
    #: plain 1 MB document of records has about 15,000)
    max_payload_containers: int = setting(50_000, ge=1)
    #: event dedupe window on (tenant_id, event_id, event_type)
    dedupe_ttl_seconds: float = setting(300.0, gt=0)
    #: per tenant (JOBFORGE_RATE_LIMITING_ENABLED turns it on); burst defaults to the limit
    rate_limit_per_minute: int = setting(100, ge=1)
    #: requests a tenant may send at once before the per-minute pace applies; unset = the per-minute limit
    rate_limit_burst: int | None = setting(None, ge=1)
    #: optional second limit per (tenant, actor)
    rate_limit_actor_per_minute: int | None = setting(None, ge=1)
    #: refused answers (4xx) a caller (API key, else client address) gets at once in a row before its
    #: refusals are paced (docs/security.md, "Pacing refused callers")
    refusal_pacing_burst: int = setting(20, ge=1)
    #: refused answers per minute a caller gets at once after that burst
    refusal_pacing_per_minute: float = setting(60.0, gt=0)
    #: the longest a paced caller's refusal is held before it is answered (while paced, the caller's
    #: requests are also served one at a time); 0 turns pacing off
    refusal_pacing_max_hold_seconds: float = setting(2.0, ge=0, le=60)
    #: refusals held plus paced requests waiting, at most, per jobforge-api process (each holds a
    #: connection); over it a refusal is answered at once and its connection closed
    refusal_pacing_max_held: int = setting(256, ge=0)
    #: HMAC key of policy tokens and admission receipts; unset = ``home/signing.key`` (created once)
    signing_key: Secret | None = None
    #: how long an admission receipt (gate judged, run not yet admitted) stays valid
    receipt_ttl_seconds: int = setting(3600, ge=5, le=86_400)
    #: how long a policy token (``jobforge tokens issue``) stays valid
    policy_token_ttl_seconds: int = setting(900, ge=5, le=86_400)
    #: address jobforge-api binds
    api_host: str = "127.0.0.1"
    #: port of jobforge-api
    api_port: int = setting(8080, ge=0, le=65535)
    #: who an operator request (SDK Temporal-direct, raw Temporal start) is granted
    operator_scopes: list[str] = setting(factory=lambda: ["*:*"])

    # -- the console (jobforge-api at /ui; docs/console.md) --
    #: operator sign-in (every tenant, the flags); unset = none. ``jobforge dev`` makes a fresh one at each start
    console_operator_token: Secret | None = None
    #: how long a console sign-in lasts
    console_session_ttl_seconds: int = setting(28_800, ge=60, le=604_800)
    #: mark the session cookie Secure; unset = when the request came over https
    console_secure_cookies: bool | None = None
    #: the Temporal Web UI's base URL, for links from a run to its workflow; empty = no links
    temporal_ui_url: str = setting("", pattern=r"^(|https?://\S+)$")

    # -- the verify pack (docs/verify-pack.md) --
    #: directories repositories may be verified in (comma separated); default: the worker's working directory
    verify_allowed_roots: list[Path] = setting(factory=lambda: [Path(".")])
    #: the task queue of verify runs and their steps; empty = ``<task_queue>-verify``
    verify_task_queue: str = ""
    #: a step that stops heartbeating this long is retried (on another worker)
    verify_heartbeat_timeout_seconds: float = setting(30.0, gt=0)
    #: between SIGTERM and SIGKILL of a step's process group
    verify_kill_grace_seconds: float = setting(5.0, ge=0)
    #: ``auto`` = bubblewrap when it works here, ``off``, ``required`` (refuse to run unsandboxed)
    verify_sandbox: str = setting("auto", pattern="^(auto|off|required)$")
    #: download caches (pip, npm) shared by verify installs; unset = ``home/verify/cache``
    verify_cache_dir: Path | None = None
    #: the environments verify installs built, kept per install key under ``<verify cache>/envs`` so that a
    #: warm run starts from them; least recently used entries go beyond this size; 0 = keep none
    verify_env_cache_max_mb: int = setting(8192, ge=0)
    #: the artifact store (content-addressed, tenant-scoped); unset = ``home/artifacts``
    artifact_dir: Path | None = None

    # -- observability (docs/operations.md) --
    #: ``host:port`` of jobforge-worker's Prometheus endpoint (``/metrics``); empty = none
    metrics_bind: str = setting("", pattern=r"^(|.+:\d{1,5})$")
    #: ``host:port`` of jobforge-api's Prometheus endpoint (``/metrics``); empty = none
    api_metrics_bind: str = setting("", pattern=r"^(|.+:\d{1,5})$")
    #: how often a worker with metrics on refreshes its task queues' backlog gauge (DescribeTaskQueue)
    queue_depth_interval_seconds: float = setting(15.0, gt=0)
    #: OTLP/HTTP collector that receives traces, e.g. ``http://127.0.0.1:4318``; empty = tracing off
    otlp_endpoint: str = ""

    #: structlog level of every process (DEBUG, INFO, WARNING, ERROR)
    log_level: str = "INFO"
    #: ``auto`` = console on a TTY, JSON otherwise
    log_format: str = "auto"

    def __init__(self, **values: Any) -> None:
        """The settings of this process: ``values`` (by setting name), then the environment, then ``.env``."""
        unknown = sorted(set(values) - _SPECS.keys())
        if unknown:
            raise TypeError(f"Settings() got unknown settings: {', '.join(unknown)}")
        given = {name: (_variable(name, where), raw) for name, (where, raw) in _from_environment().items()}
        given.update((name, (name, value)) for name, value in values.items())
        for name, spec in _SPECS.items():
            if name in given:
                where, raw = given[name]
                object.__setattr__(self, name, spec.value(raw, where))
            else:
                object.__setattr__(self, name, spec.default())
        object.__setattr__(self, "_given", frozenset(given))

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` (by setting name), converted and checked as the environment's values are."""
        unknown = sorted(set(changes) - _SPECS.keys())
        if unknown:
            raise TypeError(f"Settings.replace() got unknown settings: {', '.join(unknown)}")
        copy = object.__new__(Settings)
        for name, spec in _SPECS.items():
            value = spec.value(changes[name], name) if name in changes else getattr(self, name)
            object.__setattr__(copy, name, value)
        object.__setattr__(copy, "_given", self._given | changes.keys())
        return copy

    @property
    def fields_set(self) -> frozenset[str]:
        """The settings given (as arguments, in the environment or ``.env``) rather than left at their default."""
        return self._given

    @property
    def state_file(self) -> Path:
        return self.home / "state.json"

    @property
    def verify_queue(self) -> str:
        return self.verify_task_queue or f"{self.task_queue}-verify"

    @property
    def artifact_root(self) -> Path:
        return self.artifact_dir if self.artifact_dir is not None else self.home / "artifacts"

    def database_url_value(self) -> str | None:
        return self.database_url.get_secret_value() if self.database_url else None

    #: the settings given rather than defaulted (:attr:`fields_set`); not a setting
    _given: frozenset[str] = field(default=frozenset(), repr=False, compare=False)


def _variable(name: str, where: str) -> str:
    return f"{where}'s {ENV_PREFIX}{name.upper()}" if where == ENV_FILE else f"{ENV_PREFIX}{name.upper()}"


def _from_environment() -> dict[str, tuple[str, str]]:
    """Setting name -> (where: ``env`` or ``.env``, its text), the environment's over ``.env``'s."""
    prefix = ENV_PREFIX.lower()
    found: dict[str, tuple[str, str]] = {}
    if os.path.isfile(ENV_FILE):
        from dotenv import dotenv_values  # only with a .env: a process without one never imports it

        for key, value in dotenv_values(ENV_FILE).items():
            name = key.lower().removeprefix(prefix)
            if value is not None and key.lower().startswith(prefix) and name in _SPECS:
                found[name] = (ENV_FILE, value)
    for key, value in os.environ.items():
        name = key.lower().removeprefix(prefix)
        if key.lower().startswith(prefix) and name in _SPECS:
            found[name] = ("env", value)
    return found


# -- conversions --------------------------------------------------------------------------------------

_INT = re.compile(r"\s*([+-]?[0-9]+(?:_[0-9]+)*)(?:\.0+)?\s*", re.ASCII)
_TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})
_FALSE = frozenset({"0", "false", "f", "no", "n", "off"})


def _int(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and (match := _INT.fullmatch(value)):
        return int(match.group(1))
    raise ValueError("an integer")


def _float(value: Any) -> float:
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value.isascii():
        # as pydantic's lax mode: underscores anywhere but first, last or doubled are dropped, and then the
        # text may not be padded with whitespace
        bad = "_" in value and (value[0] == "_" or value[-1] == "_" or "__" in value or value != value.strip())
        if not bad:
            try:
                return float(value.replace("_", ""))
            except ValueError:
                pass
    raise ValueError("a number")


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
        return value.lower() in _TRUE
    raise ValueError("true or false (1/0, yes/no, on/off)")


def _str(value: Any) -> str:
    if isinstance(value, str):
        return value
    raise ValueError("text")


def _path(value: Any) -> Path:
    if isinstance(value, str | Path):
        return Path(value)
    raise ValueError("a path")


def _secret(value: Any) -> Secret:
    if isinstance(value, Secret):
        return value
    if isinstance(value, str):
        return Secret(value)
    raise ValueError("text")


def _listed(item: Callable[[Any], Any]) -> Callable[[Any], list[Any]]:
    def convert(value: Any) -> list[Any]:
        if isinstance(value, str):
            return [item(part.strip()) for part in value.split(",") if part.strip()]
        if isinstance(value, list | tuple):
            return [item(part) for part in value]
        raise ValueError("a comma-separated list")

    return convert


#: the annotation of a setting (as written in the class) -> how a value becomes one
_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "int": _int, "float": _float, "bool": _bool, "str": _str, "Path": _path, "Secret": _secret,
    "list[str]": _listed(_str), "list[Path]": _listed(_path),
}


@dataclass(frozen=True)
class _Spec:
    """One setting: its name, annotation, default and checks."""

    name: str
    annotation: str
    convert: Callable[[Any], Any]
    optional: bool
    declared: Field[Any]
    check: Callable[[Any], Any] | None

    def default(self) -> Any:
        if self.declared.default_factory is not MISSING:
            return self.declared.default_factory()
        return self.declared.default

    def value(self, raw: Any, where: str) -> Any:
        if raw is None and self.optional:
            return None
        shown = "(secret)" if self.convert is _secret else repr(raw)[:200]
        try:
            value = self.convert(raw)
        except ValueError as exc:
            raise SettingsError(f"{where}: must be {exc}, got {shown}") from None
        for problem in _violations(value, self.declared.metadata):
            raise SettingsError(f"{where}: must be {problem}, got {shown}")
        if self.check is not None:
            try:
                value = self.check(value)
            except ValueError as exc:
                raise SettingsError(f"{where}: {exc}") from None
        return value


def _violations(value: Any, constraints: Mapping[str, Any]) -> list[str]:
    bad = []
    if "ge" in constraints and not value >= constraints["ge"]:
        bad.append(f">= {constraints['ge']}")
    if "gt" in constraints and not value > constraints["gt"]:
        bad.append(f"> {constraints['gt']}")
    if "le" in constraints and not value <= constraints["le"]:
        bad.append(f"<= {constraints['le']}")
    if "pattern" in constraints and not re.search(constraints["pattern"], value):
        bad.append(f"text matching {constraints['pattern']}")
    return bad


def _operator_token(value: Secret | None) -> Secret | None:
    if value is not None and not value.get_secret_value():
        return None  # set but empty (a compose default): no operator sign-in
    if value is not None and len(value.get_secret_value()) < 32:
        raise ValueError("the console operator token must be at least 32 characters (a random secret)")
    return value


#: checks beyond the type and the constraints, by setting
_CHECKS: dict[str, Callable[[Any], Any]] = {"console_operator_token": _operator_token}


def _spec(f: Field[Any]) -> _Spec:
    annotation = str(f.type)
    base = annotation.removesuffix(" | None")
    return _Spec(name=f.name, annotation=annotation, convert=_CONVERTERS[base], optional=base != annotation,
                 declared=f, check=_CHECKS.get(f.name))


#: every setting, in the order the class declares them
_SPECS: dict[str, _Spec] = {f.name: _spec(f) for f in fields(Settings) if f.name != "_given"}


def specs() -> list[_Spec]:
    """Every setting (name, annotation, default, constraints), for the settings reference."""
    return list(_SPECS.values())
