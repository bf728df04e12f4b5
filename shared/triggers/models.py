"""Triggers and their safety configuration."""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

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


class FireContext(BaseModel):
    """What a particular fire is about (the event, or the schedule/manual fire)."""

    model_config = ConfigDict(frozen=True)

    source: str  # "event" | "schedule" | "manual"
    event_type: str | None = None
    source_app: str | None = None
    actor: str = "trigger"
    event_id: str | None = None


class TriggerState(BaseModel):
    """What the gate needs from history: recent fires (those that started runs) of this trigger."""

    model_config = ConfigDict(frozen=True)

    last_fired_at: datetime | None = None
    fires_in_window: int = 0


class Verdict(enum.StrEnum):
    FIRE = "fire"
    SKIP = "skip"
    DRY_RUN = "dry_run"


class Decision(BaseModel):
    model_config = ConfigDict(frozen=True)

    verdict: Verdict
    reasons: list[str]
    #: seconds until a fire would pass the cooldown/max-runs checks (0 when not held by them)
    retry_after: float = 0.0


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


class StoredEvent(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: int
    tenant_id: str
    event_id: str
    event_type: str
    trace_id: str
    source_app: str
    source_module: str
    payload: dict[str, Any]
    occurred_at: datetime | None
    route_workflow_id: str
    received_at: datetime
    #: when routing finished (None: not yet, or routed before JobForge stored it), and its result
    routed_at: datetime | None = None
    routing: RouteEventResult | None = None
    #: who submitted it ('' for events stored before JobForge kept it)
    actor: str = ""


# -- what crosses Temporal boundaries --------------------------------------------------------------


class TriggerFireInput(BaseModel):
    """The trigger-fire workflow's input (a Schedule's action, or a manual `triggers fire`)."""

    model_config = ConfigDict(frozen=True)

    tenant_id: str
    trigger_id: str
    trigger_name: str
    source: str = "schedule"
    actor: str = "trigger"


def read_fire_input(args: Sequence[Any]) -> TriggerFireInput:
    """The trigger-fire workflow's input from its decoded arguments, or :class:`TriggerInputInvalid`
    naming what is wrong (a Schedule action replaced outside JobForge passes none or another shape)."""
    from jobforge.errors import TriggerInputInvalid

    fix = "; `jobforge triggers repair NAME` restores a Schedule's action"
    if len(args) != 1:
        what = "no argument" if not args else f"{len(args)} arguments"
        raise TriggerInputInvalid(f"jobforge.trigger.fire takes one argument, a TriggerFireInput; it got {what}{fix}",
                                  arguments=len(args))
    try:
        return TriggerFireInput.model_validate(args[0])
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'input'}: {e['msg']}"
                             for e in exc.errors(include_url=False, include_input=False))
        raise TriggerInputInvalid(f"jobforge.trigger.fire got an invalid TriggerFireInput ({problems}){fix}",
                                  fields=[".".join(str(p) for p in e["loc"]) for e in exc.errors()]) from None


class FireRefusal(BaseModel):
    """A scheduled fire that could not be decided: its workflow's input was unusable."""

    model_config = ConfigDict(frozen=True)

    tenant_id: str
    trigger_name: str
    fire_key: str
    reason: str


class FireRequest(BaseModel):
    """One fire to decide (and act on) for one trigger."""

    model_config = ConfigDict(frozen=True)

    trigger_id: str
    fire_key: str
    context: FireContext
    #: the event envelope as a JSON object, for input pointers
    event: dict[str, Any] | None = None


class FireOutcome(BaseModel):
    model_config = ConfigDict(frozen=True)

    trigger_name: str
    verdict: Verdict
    reasons: list[str]
    fire_id: int
    run_workflow_id: str | None = None
    start_error: str = ""


class RouteEventInput(BaseModel):
    model_config = ConfigDict(frozen=True)

    event: dict[str, Any]
    trace_id: str
    #: who submitted the event (for the triggers' actor allow/deny lists)
    actor: str = ""


class RouteEventResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    event_row_id: int
    matched: int
    fires: list[FireOutcome]


class StoreEventInput(BaseModel):
    model_config = ConfigDict(frozen=True)

    event: dict[str, Any]
    trace_id: str
    route_workflow_id: str
    #: who submitted the event (``events.route`` passes it to the fires)
    actor: str = ""


class RouteRef(BaseModel):
    """An admitted event as its tenant's router receives it (a signal): a reference to its stored row.

    The envelope itself stays in PostgreSQL, so a router's history grows by a few hundred bytes per
    event whatever the payload's size.
    """

    model_config = ConfigDict(frozen=True)

    #: the event row's ``route_workflow_id`` (``shared.events.route_key``)
    route_key: str
    #: who submitted the event (for the triggers' actor allow/deny lists)
    actor: str = ""
    #: the submitter's trace context (W3C ``traceparent``), so the routing joins the event's trace
    carrier: dict[str, str] = {}


class RouteBatchInput(BaseModel):
    """A batch of one tenant's admitted events for ``events.route_batch`` (the router's step)."""

    model_config = ConfigDict(frozen=True)

    events: list[RouteRef]


class UnroutedInput(BaseModel):
    model_config = ConfigDict(frozen=True)

    tenant_id: str
    #: only events received at least this long ago (younger ones are still on their way as signals)
    older_than_seconds: float
    limit: int
    #: only the events of this router's shard (``shared.events.router_shard``)
    shard: int = 0
    shards: int = 1


class UnroutedResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    refs: list[RouteRef]
    #: the sweep was cut at its limit: there may be more
    more: bool


class RouteBatchResult(BaseModel):
    """Per event of the batch: routed (its result is stored on the event row), or failed (retried later)."""

    model_config = ConfigDict(frozen=True)

    routed: list[str]
    #: route key -> why it failed this time (the router retries it after a back-off)
    failed: dict[str, str] = {}


class RouterInput(BaseModel):
    """The per-tenant router's input: its tenant, and what a previous run left to route."""

    model_config = ConfigDict(frozen=True)

    tenant_id: str
    #: which of the tenant's routers this is (settings.event_router_shards of them)
    shard: int = 0
    shards: int = 1
    pending: list[RouteRef] = []
    #: events routed by this router's earlier runs (continue-as-new keeps the count)
    routed: int = 0
