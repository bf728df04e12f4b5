"""``jobforge.event.route``: store an admitted event and fire every trigger whose pattern matches it.

Durable: an accepted event is routed even if a worker dies mid-way (the workflow resumes on another
worker), and never twice (one routing workflow per admitted event; each fire has its own key).

Routing is one *local* activity, ``events.route`` (store the event, then decide and act on every
matching trigger's fire): it runs inside the workflow task on the worker that holds it and is
recorded as one marker, so routing an event costs the Temporal server a handful of writes and the
worker two workflow activations. The step is idempotent (the event row is keyed by this workflow's
id, each fire by its fire key, each run by the fire's idempotency key), so a worker dying mid-task
only means it runs again on the next worker.

Nothing starts this workflow any more (the per-tenant ``jobforge.event.router`` replaced it); it stays
registered so the routing workflows recorded with the one-step patch still replay. The path before
that patch (``events.accept``, then one ``triggers.fire`` per trigger) is gone: the patch is
deprecated (``workflow.deprecate_patch``), the second of Temporal's three steps.

The workflow runs outside the Python sandbox (``sandboxed=False``): it is JobForge's own, uses only
workflow APIs and immutable models, and the sandbox's per-run module set-up was the largest share
of a routing workflow's CPU.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.triggers import TriggerActivities
    from jobforge.models import RouteEventResult
    from shared.triggers.models import RouteEventInput, StoreEventInput

from workflows._job import read_argument

ROUTE_TIMEOUT = timedelta(seconds=30)  # the one-step route: the event and every fire
ONE_STEP = "jobforge.route.one-step"
RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=10))


@workflow.defn(name="jobforge.event.route", sandboxed=False)
class RouteEventWorkflow:
    @workflow.run
    async def run(self, *args: Any) -> RouteEventResult:
        # the argument is read here, not by the SDK: a malformed one (a raw start) fails typed at once
        req = read_argument(args, RouteEventInput)
        workflow.deprecate_patch(ONE_STEP)
        return await workflow.execute_local_activity_method(
            TriggerActivities.route_event,
            StoreEventInput(event=req.event, trace_id=req.trace_id, route_workflow_id=workflow.info().workflow_id,
                            actor=req.actor),
            start_to_close_timeout=ROUTE_TIMEOUT, retry_policy=RETRY)
