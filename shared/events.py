"""Event submission: the gate admits, then a durable routing workflow stores and routes the event."""

from __future__ import annotations

from typing import TYPE_CHECKING

from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError

from shared.errors import TemporalUnavailable
from shared.models import EventEnvelope, EventReceipt
from shared.settings import Settings
from shared.temporal import run_search_attributes
from shared.triggers.models import RouteEventInput
from shared.triggers.schedules import ROUTE_EVENT_WORKFLOW

if TYPE_CHECKING:
    from shared.gate import Gate


def route_workflow_id(receipt: EventReceipt) -> str:
    """One routing workflow per admitted copy (a copy admitted again after the TTL gets its own)."""
    seen = int(receipt.first_seen_at.timestamp() * 1_000_000)
    return f"jobforge/{receipt.tenant_id}/event/{receipt.event_type}/{receipt.event_id}/{seen}"


async def start_routing(temporal: Client, settings: Settings, event: EventEnvelope, receipt: EventReceipt,
                        actor: str) -> str:
    """Start (or find, on a retry) the routing workflow of an admitted event; returns its id."""
    workflow_id = route_workflow_id(receipt)
    await temporal.start_workflow(
        ROUTE_EVENT_WORKFLOW,
        RouteEventInput(event=event.model_dump(mode="json"), trace_id=receipt.trace_id, actor=actor),
        id=workflow_id, task_queue=settings.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        search_attributes=run_search_attributes(receipt.tenant_id, ROUTE_EVENT_WORKFLOW, receipt.trace_id),
        # a worker sharing this client (`jobforge dev`, a worker-side submitter) routes at once
        request_eager_start=True,
    )
    return workflow_id


async def route_admitted(temporal: Client, settings: Settings, gate: Gate, event: EventEnvelope,
                         receipt: EventReceipt, actor: str) -> str:
    """Start routing an admitted event; if that fails, release its dedupe claim so a retry is admitted."""
    try:
        return await start_routing(temporal, settings, event, receipt, actor)
    except (RPCError, RuntimeError):
        await gate.deduper.release(receipt.tenant_id, receipt.event_type, receipt.event_id, receipt.first_seen_at)
        raise TemporalUnavailable("the event was admitted but its routing could not start; retry it") from None
