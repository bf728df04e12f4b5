"""The wire contract: the typed objects that cross between an app and JobForge (HTTP bodies and answers, the
argument of a template run started through Temporal).

New fields always get defaults so that histories recorded by older code still decode.
"""

from __future__ import annotations

import enum
import re
from datetime import datetime
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RunStatus(enum.StrEnum):
    #: started and handed out, not admitted yet (the record written when the run id is handed out; a
    #: run started straight through Temporal has no record until admission)
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"

    @property
    def is_final(self) -> bool:
        return self not in (RunStatus.QUEUED, RunStatus.RUNNING)

    @classmethod
    def final(cls) -> tuple[RunStatus, ...]:
        return tuple(status for status in cls if status.is_final)


class JobRun(Frozen):
    """What every template workflow receives: the request envelope (inputs not yet validated)."""

    tenant_id: str
    template_key: str
    inputs: dict[str, Any] = Field(default_factory=dict)
    trace_id: str = ""
    actor: str = "unknown"
    idempotency_key: str | None = None
    input_hash: str = ""
    #: a signed admission receipt from the HTTP ingress / SDK gate (not a secret: bound to this
    #: workflow id, single-use); without one, admission applies the full gate as an operator request
    receipt: str = ""
    #: for action jobs started without a receipt: the one-way reference (``sha256:...``) of a policy
    #: token, never the token itself (docs/security.md)
    policy_ref: str = ""


class RunRecord(Frozen):
    """A run as the store knows it."""

    tenant_id: str
    template_key: str
    workflow_id: str
    run_id: str
    status: RunStatus
    trace_id: str
    actor: str
    idempotency_key: str | None
    input_hash: str
    summary: dict[str, Any]
    error: str
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


class RunHandleInfo(Frozen):
    """What ``request_job`` answers: the run it started (or the one the idempotency key names)."""

    tenant_id: str
    template_key: str
    workflow_id: str
    run_id: str
    trace_id: str
    #: False when an earlier request with the same idempotency key already started this run
    created: bool


class ArtifactRecord(Frozen):
    """A file a run produced, as the store knows it (the bytes lie in the artifact store)."""

    id: int
    tenant_id: str
    run_id: str
    name: str
    kind: str
    media_type: str
    sha256: str
    size: int
    #: relative to the artifact store's root
    path: str
    created_at: datetime


class SealedSecret(Frozen):
    """A key rotation's new key (``autopilot.keys.rotation``, ``GET /v1/runs/{id}/sealed-secret``), its secret
    sealed to the recipient's public key: open it with :func:`jobforge.sealed.open_sealed_secret`."""

    run_id: str
    new_key_id: str
    #: the new key's scopes (the rotated key's)
    scopes: list[str]
    #: base64 sealed box holding the new key's full secret
    sealed_secret: str


class EventEnvelope(Frozen):
    """An immutable event a product app submits."""

    tenant_id: str
    event_id: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:-]+$")
    event_type: str = Field(min_length=1, max_length=200, pattern=r"^[a-z0-9_]+(\.[a-z0-9_]+)*$")
    trace_id: str = ""
    source_app: str = Field(default="", max_length=100)
    source_module: str = Field(default="", max_length=200)
    payload: dict[str, Any] = Field(default_factory=dict)
    occurred_at: datetime | None = None


class EventReceipt(Frozen):
    """What ``submit_event`` answers: admitted, or a duplicate pointing at the original."""

    tenant_id: str
    event_id: str
    event_type: str
    trace_id: str
    duplicate: bool
    #: when the original copy was first seen, and its trace id
    first_seen_at: datetime
    original_trace_id: str
    payload_hash: str


class EventRouting(Frozen):
    """Where one admitted event is (``GET /v1/events/{event_type}/{event_id}``): received, and once its
    tenant's router has handled it, what that decided (``routing``)."""

    tenant_id: str
    event_id: str
    event_type: str
    trace_id: str
    #: when the copy the receipt names was first seen (the event's dedupe window starts there)
    first_seen_at: datetime
    received_at: datetime
    #: None until the event has been routed (routing is durable: it will be)
    routed_at: datetime | None = None
    routing: RouteEventResult | None = None


# -- triggers -------------------------------------------------------------------------------------

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
_PATTERN = re.compile(r"^[A-Za-z0-9_*-]+(\.[A-Za-z0-9_*-]+)*$")


class TriggerKind(enum.StrEnum):
    CRON = "cron"
    EVENT = "event"


class OverlapPolicy(enum.StrEnum):
    """What a cron trigger's Schedule does when the previous fire is still running (Temporal's names)."""

    SKIP = "skip"
    BUFFER_ONE = "buffer_one"
    BUFFER_ALL = "buffer_all"
    CANCEL_OTHER = "cancel_other"
    TERMINATE_OTHER = "terminate_other"
    ALLOW_ALL = "allow_all"


class SafetyConfig(BaseModel):
    """What the safety gate checks before a trigger may fire."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dry_run: bool = False
    cooldown_seconds: float = Field(default=0, ge=0)
    max_runs: int | None = Field(default=None, ge=1)
    window_seconds: float = Field(default=3600, gt=0)
    #: entries like ``template:autopilot.x.y``, ``event_type:contract.*``, ``source_app:settler``, ``actor:bob``
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    #: when true, a fire must match at least one allow entry (an empty allow list then refuses all)
    allow_required: bool = False

    @field_validator("allow", "deny")
    @classmethod
    def _entries(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            field, _, pattern = entry.partition(":")
            if field not in ALLOW_FIELDS or not pattern:
                raise ValueError(f"{entry!r}: use FIELD:PATTERN with FIELD one of {', '.join(sorted(ALLOW_FIELDS))}")
        return value


ALLOW_FIELDS = frozenset({"template", "event_type", "source_app", "actor"})


def strict_safety_config() -> SafetyConfig:
    """A conservative default: dry-run on, cooldown 1 h, 1 run per day, an allow list required."""
    return SafetyConfig(dry_run=True, cooldown_seconds=3600, max_runs=1, window_seconds=86400, allow_required=True)


class TriggerSpec(BaseModel):
    """What a user asks for when creating a trigger."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tenant_id: str
    name: str
    kind: TriggerKind
    template_key: str
    inputs: dict[str, Any] = Field(default_factory=dict)
    #: event triggers: inputs taken from the event (input name → JSON pointer into the envelope, e.g. /payload/id)
    input_pointers: dict[str, str] = Field(default_factory=dict)
    cron: str | None = None
    interval_seconds: float | None = Field(default=None, gt=0)
    timezone: str = "UTC"
    event_pattern: str | None = None
    enabled: bool = True
    safety: SafetyConfig = Field(default_factory=SafetyConfig)
    overlap: OverlapPolicy = OverlapPolicy.SKIP
    catchup_window_seconds: float = Field(default=60, ge=1)
    jitter_seconds: float = Field(default=0, ge=0)
    actor: str = "trigger"

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("trigger names are 1-63 chars of lowercase letters, digits, '.', '_' or '-'")
        return value

    @field_validator("input_pointers")
    @classmethod
    def _pointers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, pointer in value.items():
            if pointer and not pointer.startswith("/"):
                raise ValueError(f"input {name!r}: {pointer!r} is not a JSON pointer (it must start with '/')")
        return value

    @model_validator(mode="after")
    def _kind_fields(self) -> TriggerSpec:
        if self.kind is TriggerKind.CRON:
            if bool(self.cron) == bool(self.interval_seconds):
                raise ValueError("a cron trigger needs exactly one of cron (an expression) or interval_seconds")
            if self.event_pattern:
                raise ValueError("a cron trigger takes no event pattern")
            if self.input_pointers:
                raise ValueError("input pointers read from an event; a cron trigger has none")
        else:
            if not self.event_pattern or not _PATTERN.match(self.event_pattern):
                raise ValueError("an event trigger needs an event pattern like 'contract.*' or 'contract.signed'")
            if self.cron or self.interval_seconds:
                raise ValueError("an event trigger takes no cron expression or interval")
        return self


class Trigger(TriggerSpec):
    """A stored trigger."""

    trigger_id: str
    created_at: datetime
    updated_at: datetime
    paused: bool = False
    #: cron triggers: the Schedule's times as JobForge last wrote or adopted them, in Temporal's form
    #: (``shared.triggers.schedules.spec_text``), so an edit made in Temporal since shows
    schedule_spec: str = ""

    @property
    def strict(self) -> bool:
        """Whether every fire must match an allow-list entry (``--strict``)."""
        return self.safety.allow_required



class Verdict(enum.StrEnum):
    FIRE = "fire"
    SKIP = "skip"
    DRY_RUN = "dry_run"



class FireRecord(BaseModel):
    """A stored gate decision about one fire."""

    model_config = ConfigDict(frozen=True)

    id: int
    tenant_id: str
    trigger_id: str
    trigger_name: str
    fire_key: str
    source: str
    verdict: Verdict
    reasons: list[str]
    event_type: str | None
    event_id: str | None
    inputs: dict[str, Any]
    run_workflow_id: str | None
    start_error: str
    fired_at: datetime
    #: False when this record was found (a retry), not made by this call
    created: bool = True



class FireOutcome(BaseModel):
    model_config = ConfigDict(frozen=True)

    trigger_name: str
    verdict: Verdict
    reasons: list[str]
    fire_id: int
    run_workflow_id: str | None = None
    start_error: str = ""



class RouteEventResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    event_row_id: int
    matched: int
    fires: list[FireOutcome]


class TriggerView(Frozen):
    """A trigger as JobForge shows it (``GET /v1/triggers/{name}``): the stored spec, its state and, for a cron
    trigger, its Schedule as Temporal has it."""

    trigger: Trigger
    #: active | paused | disabled | drifted | schedule_missing
    state: str
    schedule_id: str | None = None
    schedule_note: str = ""
    next_fires: list[datetime] = Field(default_factory=list)
    recent_fires: int = 0
    #: what of the Schedule differs so that its fires cannot work (`jobforge triggers repair` puts it back)
    drift: list[str] = Field(default_factory=list)
    #: what was changed in Temporal that is valid (kept by repair and update)
    edited: list[str] = Field(default_factory=list)
    #: why every fire (of a cron trigger: every scheduled fire) is skipped by the safety gate, if it is
    skips: str = ""
    #: strict: every fire must match an allow-list entry
    strict: bool = False
    #: the command that puts a drifted or missing Schedule right
    fix: str = ""
