"""Triggers: the server's models (what crosses Temporal boundaries, the stored event). The trigger spec,
its safety configuration, fire records and routing results are the SDK's wire contract (:mod:`jobforge.models`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from jobforge.models import RouteEventResult, Verdict


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


class Decision(BaseModel):
    model_config = ConfigDict(frozen=True)

    verdict: Verdict
    reasons: list[str]
    #: seconds until a fire would pass the cooldown/max-runs checks (0 when not held by them)
    retry_after: float = 0.0


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


class RouteEventInput(BaseModel):
    model_config = ConfigDict(frozen=True)

    event: dict[str, Any]
    trace_id: str
    #: who submitted the event (for the triggers' actor allow/deny lists)
    actor: str = ""


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
