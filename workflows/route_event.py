"""``jobforge.event.route``: store an admitted event and fire every trigger whose pattern matches it.

Durable: an accepted event is routed even if a worker dies mid-way (the workflow resumes on another
worker), and never twice (one routing workflow per admitted event; each fire has its own key).

Routing is one *local* activity, ``events.route`` (store the event, then decide and act on every
matching trigger's fire): it runs inside the workflow task on the worker that holds it and is
recorded as one marker, so routing an event costs the Temporal server a handful of writes and the
worker two workflow activations. The step is idempotent (the event row is keyed by this workflow's
id, each fire by its fire key, each run by the fire's idempotency key), so a worker dying mid-task
only means it runs again on the next worker. Histories recorded before the one-step routing (a
marker per step: ``events.accept``, then one ``triggers.fire`` per trigger) replay on the old path.

The workflow runs outside the Python sandbox (``sandboxed=False``): it is JobForge's own, uses only
workflow APIs and immutable models, and the sandbox's per-run module set-up was the largest share
of a routing workflow's CPU.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.triggers import TriggerActivities
    from shared.triggers.models import (
        FireContext,
        FireRequest,
        RouteEventInput,
        RouteEventResult,
        StoreEventInput,
    )

TIMEOUT = timedelta(seconds=15)  # short: a crashed worker's activity is retried elsewhere soon
ROUTE_TIMEOUT = timedelta(seconds=30)  # the one-step route: the event and every fire
ONE_STEP = "jobforge.route.one-step"
RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=10))


@workflow.defn(name="jobforge.event.route", sandboxed=False)
class RouteEventWorkflow:
    @workflow.run
    async def run(self, req: RouteEventInput) -> RouteEventResult:
        info = workflow.info()
        event = req.event
        if workflow.patched(ONE_STEP):
            return await workflow.execute_local_activity_method(
                TriggerActivities.route_event,
                StoreEventInput(event=event, trace_id=req.trace_id, route_workflow_id=info.workflow_id,
                                actor=req.actor),
                start_to_close_timeout=ROUTE_TIMEOUT, retry_policy=RETRY)
        accepted = await workflow.execute_local_activity_method(
            TriggerActivities.accept_event,
            StoreEventInput(event=event, trace_id=req.trace_id, route_workflow_id=info.workflow_id),
            start_to_close_timeout=TIMEOUT, retry_policy=RETRY)
        context = FireContext(source="event", event_type=str(event["event_type"]),
                              source_app=str(event.get("source_app") or "") or None,
                              actor=req.actor or "event", event_id=str(event["event_id"]))
        fires = await asyncio.gather(*(
            workflow.execute_local_activity_method(
                TriggerActivities.fire,
                FireRequest(trigger_id=trigger_id, fire_key=f"{info.workflow_id}#{trigger_id}", context=context,
                            event=event),
                start_to_close_timeout=TIMEOUT, retry_policy=RETRY)
            for trigger_id in accepted.trigger_ids))
        return RouteEventResult(event_row_id=accepted.event_row_id, matched=len(accepted.trigger_ids),
                                fires=list(fires))
