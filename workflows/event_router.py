"""``jobforge.event.router``: one long-lived router per tenant routes that tenant's admitted events.

An admitted event reaches its tenant's router as a signal, sent with signal-with-start (the router
is started by the first event, and again after it continues as new). Once the signal is accepted
the event is in the router's durable history, so it is routed even if a worker dies mid-way: the
router resumes on another worker and routes whatever it had not finished.

A signal carries a reference to the event's row, which the submitter stored before signalling,
not the envelope: a router's history grows by a few hundred bytes per event whatever the payload,
and an event whose signal was lost with its router run (terminated by an operator, or by a history
limit while no worker ran) is still in PostgreSQL: each new router run first sweeps up the tenant's
stored events left unrouted for longer than :data:`SWEEP_AFTER`.

The router routes its queue in batches: one *local* activity, ``events.route_batch``, loads the
events' rows, then decides and acts on every matching trigger's fire and stores each event's
result on its row, for up to :data:`BATCH` events at once. Under load one workflow task carries
many events, so an event costs the Temporal server one signal plus a share of a workflow task, not
a workflow of its own. Routing is idempotent per event
(the event row is keyed by its route key, each fire by route key + trigger, each run by the fire's
idempotency key), so a batch run again after a crash decides nothing twice and starts nothing twice.

An event whose routing fails (its trigger's template refuses to start with a retryable error, the
database is briefly away) is retried after a back-off without holding up the tenant's other events.
The router continues as new when Temporal suggests it (or after :data:`ROUTED_PER_RUN` events),
carrying the references still queued or waiting for a retry, so its history stays small even under
a steady stream of events.

Before this router, each event had its own ``jobforge.event.route`` workflow; that workflow stays
registered so histories already recorded finish and replay.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.triggers import TriggerActivities
    from shared.events import ROUTE_SIGNAL
    from shared.triggers.models import RouteBatchInput, RouteRef, RouterInput, UnroutedInput

from workflows._job import read_argument

#: events routed by one local activity at most (each is routed concurrently with the others)
BATCH = 100
#: a router continues as new after this many events even if Temporal has not suggested it yet
ROUTED_PER_RUN = 2000
BATCH_TIMEOUT = timedelta(seconds=60)
RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=10))
FIRST_BACKOFF = timedelta(seconds=1)
MAX_BACKOFF = timedelta(seconds=60)
#: a stored event not routed this long after it was received is swept up by the next router run
SWEEP_AFTER = timedelta(minutes=2)
SWEEP_LIMIT = 1000
#: queued references a router hands to its next run at most (a few hundred bytes each)
CARRY_LIMIT = 4000


@workflow.defn(name="jobforge.event.router", sandboxed=False)
class EventRouterWorkflow:
    def __init__(self) -> None:
        self.queue: list[RouteRef] = []
        self.known: set[str] = set()

    def _add(self, ref: RouteRef, *, first: bool = False) -> None:
        if ref.route_key not in self.known:  # a repeated signal for an event already queued is dropped
            self.known.add(ref.route_key)
            if first:
                self.queue.insert(0, ref)
            else:
                self.queue.append(ref)

    async def _sweep(self, req: RouterInput) -> bool:
        """Queue this shard's stored events left unrouted; whether the sweep was cut at its limit."""
        found = await workflow.execute_local_activity_method(
            TriggerActivities.unrouted,
            UnroutedInput(tenant_id=req.tenant_id, older_than_seconds=SWEEP_AFTER.total_seconds(), limit=SWEEP_LIMIT,
                          shard=req.shard, shards=req.shards),
            start_to_close_timeout=BATCH_TIMEOUT, retry_policy=RETRY)
        for ref in found.refs:
            self._add(ref)
        return found.more

    @workflow.signal(name=ROUTE_SIGNAL)
    def route(self, ref: RouteRef) -> None:
        """Queue one admitted, stored event."""
        self._add(ref)

    @workflow.run
    async def run(self, *args: Any) -> None:
        # the argument is read here, not by the SDK: a malformed one (a raw start) fails typed at once
        req = read_argument(args, RouterInput)
        for ref in reversed(req.pending):  # what the previous run left goes first
            self._add(ref, first=True)
        # events stored but never routed (a router run terminated with signals unhandled) go last
        more = await self._sweep(req)
        routed = 0
        retry: list[RouteRef] = []
        backoff = FIRST_BACKOFF
        while routed < ROUTED_PER_RUN and not workflow.info().is_continue_as_new_suggested():
            if not self.queue:
                if not retry:
                    if more:  # the last sweep was cut at its limit: there may be more
                        more = await self._sweep(req)
                        continue
                    await workflow.wait_condition(lambda: bool(self.queue))
                else:  # route new events while the failed ones wait out their back-off
                    try:
                        await workflow.wait_condition(lambda: bool(self.queue), timeout=backoff)
                    except TimeoutError:
                        self.queue, retry = retry, []
                        backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            batch, self.queue = self.queue[:BATCH], self.queue[BATCH:]
            result = await workflow.execute_local_activity_method(
                TriggerActivities.route_batch, RouteBatchInput(events=batch),
                start_to_close_timeout=BATCH_TIMEOUT, retry_policy=RETRY)
            for ref in batch:
                if ref.route_key in result.failed:
                    retry.append(ref)
                else:
                    self.known.discard(ref.route_key)
                    routed += 1
            if not result.failed and not retry:
                backoff = FIRST_BACKOFF
        await workflow.wait_condition(workflow.all_handlers_finished)
        # references are small; beyond CARRY_LIMIT the rest is left to the next run's sweep
        carry = [*self.queue, *retry][:CARRY_LIMIT]
        workflow.continue_as_new(req.model_copy(update={"pending": carry, "routed": req.routed + routed}))
