"""Event submission: the gate admits the event, it is stored, and its tenant's durable router routes it."""

from __future__ import annotations

import asyncio
import contextlib
import time
import zlib
from datetime import datetime
from typing import TYPE_CHECKING

from temporalio.client import Client
from temporalio.service import RPCError

from jobforge.errors import RoutingTimeout, TemporalUnavailable
from jobforge.models import EventEnvelope, EventReceipt, RouteEventResult
from shared import tracing
from shared.settings import Settings
from shared.starts import start_options
from shared.triggers.models import RouteRef, RouterInput
from shared.triggers.schedules import EVENT_ROUTER_WORKFLOW

if TYPE_CHECKING:
    from shared.gate import Gate
    from shared.store.triggers import TriggerStore

#: the router's signal that queues one event (``workflows.event_router``)
ROUTE_SIGNAL = "route"


def route_key(receipt: EventReceipt) -> str:
    """One key per admitted copy (a copy admitted again after the TTL gets its own): the event row's
    ``route_workflow_id`` and the prefix of its fires' keys."""
    return route_key_at(receipt.tenant_id, receipt.event_type, receipt.event_id, receipt.first_seen_at)


def route_key_at(tenant_id: str, event_type: str, event_id: str, first_seen_at: datetime) -> str:
    """:func:`route_key` of the copy of an event first seen at ``first_seen_at`` (a time zone-aware time)."""
    return route_prefix(tenant_id, event_type, event_id) + str(int(first_seen_at.timestamp() * 1_000_000))


def route_prefix(tenant_id: str, event_type: str, event_id: str) -> str:
    """The route key of the event's copies up to the first sighting (the gate's claim statement completes it
    as :func:`route_key` does: ``shared.store.statements.ROUTE_MICROS``)."""
    return f"jobforge/{tenant_id}/event/{event_type}/{event_id}/"


def router_workflow_id(tenant_id: str, shard: int = 0) -> str:
    """A tenant's event router (``jobforge.event.router``): one per tenant and shard."""
    return f"jobforge/{tenant_id}/events/router" + (f"/{shard}" if shard else "")


def router_shard(key: str, shards: int) -> int:
    """The shard of a route key among ``shards`` (stable across processes and restarts)."""
    return zlib.crc32(key.encode()) % shards if shards > 1 else 0


async def start_routing(temporal: Client, settings: Settings, receipt: EventReceipt, actor: str) -> str:
    """Hand a stored event to its tenant's router (signal-with-start); its route key.

    Once this returns the event is in the router's history: it will be routed, even if a worker
    dies. Sending it again (a retry) is harmless: routing is idempotent per route key.
    """
    key = route_key(receipt)
    shard = router_shard(key, settings.event_router_shards)
    router = start_options(
        EVENT_ROUTER_WORKFLOW,
        RouterInput(tenant_id=receipt.tenant_id, shard=shard, shards=settings.event_router_shards),
        tenant_id=receipt.tenant_id, id=router_workflow_id(receipt.tenant_id, shard), task_queue=settings.task_queue)
    await router.start(temporal, start_signal=ROUTE_SIGNAL,
                       start_signal_args=[RouteRef(route_key=key, actor=actor, carrier=tracing.carrier())])
    return key


async def route_admitted(temporal: Client, settings: Settings, gate: Gate, event: EventEnvelope,
                         receipt: EventReceipt, actor: str, *, stored: bool = False) -> str:
    """Store an admitted event (unless the gate ``stored`` it with its claim) and hand it to its
    router. If either step fails, the stored copy is forgotten and the dedupe claim released (as far
    as the database lets us), so the caller's retry is admitted rather than answered as a duplicate
    of an event that was never routed."""
    if not stored:
        try:
            await gate.events.insert_event(event, receipt.trace_id, route_key(receipt), actor)
        except Exception:
            with contextlib.suppress(Exception):
                await gate.deduper.release(receipt.tenant_id, receipt.event_type, receipt.event_id,
                                           receipt.first_seen_at)
            raise
    try:
        return await start_routing(temporal, settings, receipt, actor)
    except (RPCError, RuntimeError):
        await gate.events.drop_unrouted(route_key(receipt))
        await gate.deduper.release(receipt.tenant_id, receipt.event_type, receipt.event_id, receipt.first_seen_at)
        raise TemporalUnavailable("the event was admitted but its routing could not start; retry it") from None


async def wait_routed(triggers: TriggerStore, receipt: EventReceipt, within: float = 60.0) -> RouteEventResult:
    """Wait until the event of ``receipt`` has been routed; its result (matched triggers, each fire).

    Raises :class:`RoutingTimeout` if it has not been routed within ``within`` seconds (it still
    will be: routing is durable; this only stops waiting).
    """
    deadline = time.monotonic() + within
    pause = 0.02
    while True:
        stored = await triggers.event(receipt.tenant_id, route_key(receipt))
        if stored is not None and stored.routing is not None:
            return stored.routing
        if time.monotonic() >= deadline:
            raise RoutingTimeout(f"event {receipt.event_id} was not routed within {within:g}s; it still will be")
        await asyncio.sleep(pause)
        pause = min(pause * 1.5, 0.5)
