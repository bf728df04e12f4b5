"""Event routing and trigger fires: store the event, find the triggers, decide each fire, start runs."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import structlog
from temporalio import activity
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from jobforge.errors import InvalidInputs, JobForgeError, ScheduleMissing, TriggerNotFound
from jobforge.models import EventEnvelope, FireOutcome, RouteEventResult, Trigger, TriggerKind, Verdict
from shared import metrics, tracing
from shared.client import OperatorClient
from shared.events import router_shard
from shared.flags import Flag
from shared.gate import Gate
from shared.security.audit import Decision as AuditDecision
from shared.security.principal import Principal
from shared.security.redaction import redact, redact_text
from shared.settings import Settings
from shared.store import Store
from shared.store.triggers import matching
from shared.templates import Registry
from shared.triggers.gate import evaluate_trigger_fire
from shared.triggers.inputs import build_inputs
from shared.triggers.models import (
    Decision,
    FireContext,
    FireRefusal,
    FireRequest,
    RouteBatchInput,
    RouteBatchResult,
    RouteRef,
    StoredEvent,
    StoreEventInput,
    TriggerState,
    UnroutedInput,
    UnroutedResult,
)
from shared.triggers.schedules import schedule_id

log = structlog.get_logger("jobforge.activities.triggers")


class TriggerActivities:
    def __init__(self, store: Store, gate: Gate, temporal: Client, settings: Settings, registry: Registry) -> None:
        self.store = store
        self.triggers = store.triggers
        self.gate = gate
        self.temporal = temporal
        self.settings = settings
        self.registry = registry

    @activity.defn(name="events.route_batch")
    async def route_batch(self, req: RouteBatchInput) -> RouteBatchResult:
        """Route a batch of one tenant's stored events concurrently (the per-tenant router's step).

        Each event is routed as by ``events.route`` and its result stored on its row. An event whose
        routing fails is answered as failed, not raised: the router retries it after a back-off while
        the tenant's other events go on. A reference whose row is gone (its submitter was told the
        hand-over failed and the row was dropped) is answered as routed: there is nothing to route.
        """
        stored = await self.triggers.stored_events([ref.route_key for ref in req.events])
        tenants = {event.tenant_id for event in stored.values() if event.routing is None}
        # one read of each tenant's event triggers for the whole batch, matched per event below
        triggers = dict(zip(tenants, await asyncio.gather(*(self.triggers.event_triggers(t) for t in tenants)),
                            strict=True))
        answers = await asyncio.gather(*(self._route_ref(ref, stored.get(ref.route_key), triggers)
                                         for ref in req.events), return_exceptions=True)
        failed: dict[str, str] = {}
        routed: list[RouteEventResult] = []
        for ref, answer in zip(req.events, answers, strict=True):
            if isinstance(answer, BaseException):
                if not isinstance(answer, Exception):
                    raise answer  # cancelled: the worker is going away
                failed[ref.route_key] = redact_text(f"{type(answer).__name__}: {answer}")[:500]
                log.warning("event_routing_failed", route_key=ref.route_key, error=failed[ref.route_key])
            elif answer is not None and (known := stored.get(ref.route_key)) is not None and known.routing is None:
                routed.append(answer)
        # the results, in one statement (a crash before it only means the batch is routed again: idempotent)
        await self.triggers.mark_routed(routed)
        metrics.event_routing("routed", len(req.events) - len(failed))
        metrics.event_routing("failed", len(failed))
        return RouteBatchResult(routed=[ref.route_key for ref in req.events if ref.route_key not in failed],
                                failed=failed)

    @activity.defn(name="events.unrouted")
    async def unrouted(self, req: UnroutedInput) -> UnroutedResult:
        """A tenant's stored events of this shard never routed (their router run was terminated), oldest first."""
        keys = await self.triggers.unrouted(req.tenant_id, timedelta(seconds=req.older_than_seconds), req.limit)
        mine = [key for key in keys if router_shard(key, req.shards) == req.shard]
        if mine:
            log.warning("events_unrouted_found", tenant_id=req.tenant_id, shard=req.shard, count=len(mine))
            metrics.event_routing("swept", len(mine))
        return UnroutedResult(refs=[RouteRef(route_key=key) for key in mine],  # the actor is on the row
                              more=len(keys) >= req.limit)

    async def _route_ref(self, ref: RouteRef, stored: StoredEvent | None,
                         triggers: dict[str, Sequence[Trigger]]) -> RouteEventResult | None:
        if stored is None:
            log.warning("event_row_missing", route_key=ref.route_key)
            return None
        if stored.routing is not None:  # routed already (a batch run again after a crash, a swept event)
            return stored.routing
        event = EventEnvelope(tenant_id=stored.tenant_id, event_id=stored.event_id, event_type=stored.event_type,
                              trace_id=stored.trace_id, source_app=stored.source_app,
                              source_module=stored.source_module, payload=stored.payload,
                              occurred_at=stored.occurred_at).model_dump(mode="json")
        with tracing.continued(f"RouteEvent:{stored.event_type}", ref.carrier, stored.trace_id):
            return await self._route(stored, event, stored.actor or ref.actor, ref.route_key,
                                     matching(triggers[stored.tenant_id], stored.event_type), mark=False)

    @activity.defn(name="events.route")
    async def route_event(self, req: StoreEventInput) -> RouteEventResult:
        """Store the admitted event once (keyed by its routing workflow), then run every matching trigger's
        ``triggers.fire``, in one step (the step of
        the per-event routing workflow that preceded the per-tenant router).

        Idempotent as a whole: the event row is keyed by the routing workflow, each fire by its fire
        key (routing workflow + trigger) and each run by the fire's idempotency key, so a retry after a
        crash or a failed fire re-decides nothing and starts nothing twice.
        """
        envelope = EventEnvelope.model_validate(req.event)
        stored = await self.triggers.store_event(envelope, req.trace_id, req.route_workflow_id, req.actor)
        matched = await self.triggers.matching(stored.tenant_id, stored.event_type)
        return await self._route(stored, req.event, req.actor, req.route_workflow_id, matched)

    async def _route(self, stored: StoredEvent, event: dict[str, Any], actor: str, route_key: str,
                     matched: Sequence[Trigger], *, mark: bool = True) -> RouteEventResult:
        """Decide and act on every matching trigger's fire for a stored event; with ``mark``, store the result
        on its row (a batch stores its results together)."""
        context = FireContext(source="event", event_type=stored.event_type, source_app=stored.source_app or None,
                              actor=actor or "event", event_id=stored.event_id)
        answers = await asyncio.gather(*(
            self._fire(trigger, FireRequest(trigger_id=trigger.trigger_id, fire_key=f"{route_key}#{trigger.trigger_id}",
                                            context=context, event=event))
            for trigger in matched), return_exceptions=True)
        for answer in answers:
            if isinstance(answer, BaseException):
                raise answer  # the step is retried; the fires that were decided are found again
        fires = [answer for answer in answers if isinstance(answer, FireOutcome)]
        result = RouteEventResult(event_row_id=stored.id, matched=len(matched), fires=fires)
        if mark:
            await self.triggers.mark_routed([result])
        return result

    async def _schedule_paused(self, trigger: Trigger) -> str | None:
        """Why a cron trigger's Schedule will not fire (paused in Temporal, or gone), else None."""
        if trigger.kind is not TriggerKind.CRON:
            return None
        sid = schedule_id(trigger.tenant_id, trigger.name)
        try:
            desc = await self.temporal.get_schedule_handle(sid).describe()
        except RPCError as exc:
            if exc.status is RPCStatusCode.NOT_FOUND:
                return ScheduleMissing(trigger.name, trigger.tenant_id, sid).message
            raise
        return "trigger is paused in Temporal" if desc.schedule.state.paused else None

    @activity.defn(name="triggers.fire_refused")
    async def fire_refused(self, req: FireRefusal) -> FireOutcome | None:
        """Record a scheduled fire whose workflow input was unusable as a skipped fire of the trigger its
        workflow id names (audited like any decision), so the trigger's fires show why nothing ran.
        None when no such trigger exists."""
        try:
            trigger = await self.triggers.get(req.tenant_id, req.trigger_name)
        except TriggerNotFound:
            return None
        context = FireContext(source="schedule", actor=trigger.actor)
        record = await self.triggers.decide_fire(
            trigger.trigger_id, req.fire_key, context,
            lambda _t, _s, _n: (Decision(verdict=Verdict.SKIP, reasons=[req.reason]), {}), trigger)
        if record.created:
            flags = await self.gate.flag_values()
            await self.gate.record(flags, trigger.tenant_id, f"trigger:{trigger.name}", "triggers.fire", trigger.name,
                                   AuditDecision.DENY, req.reason, "",
                                   {"verdict": Verdict.SKIP.value, "fire_key": req.fire_key, "source": "schedule",
                                    "template": trigger.template_key})
            log.warning("trigger_fire_input_invalid", tenant_id=trigger.tenant_id, trigger=trigger.name)
            metrics.trigger_decided(Verdict.SKIP.value, "schedule")
        return FireOutcome(trigger_name=trigger.name, verdict=record.verdict, reasons=record.reasons,
                           fire_id=record.id)

    @activity.defn(name="triggers.fire")
    async def fire(self, req: FireRequest) -> FireOutcome:
        """Decide one fire through the safety gate (recorded, audited), then start the run if it fires."""
        return await self._fire(await self.triggers.get_by_id(req.trigger_id), req)

    async def _fire(self, trigger: Trigger, req: FireRequest) -> FireOutcome:
        """:meth:`fire` for a trigger already read (the decision reads it again, in its own statement)."""
        flags = await self.gate.flag_values()
        if not flags.get(Flag.TRIGGERS, False):
            flags = await self.gate.flags.confirm(flags)  # turned on within the TTL: counts at once
        paused = await self._schedule_paused(trigger)

        def decide(current: Trigger, state: TriggerState, now: datetime) -> tuple[Decision, dict[str, object]]:
            subject = current.model_copy(update={"paused": current.paused or paused is not None})
            decision = evaluate_trigger_fire(subject, state, now, req.context,
                                             triggers_enabled=flags.get(Flag.TRIGGERS, False))
            if decision.verdict is Verdict.SKIP:
                if paused and decision.reasons == ["trigger is paused"]:
                    decision = Decision(verdict=Verdict.SKIP, reasons=[paused])
                return decision, {}
            try:
                inputs = build_inputs(current.inputs, current.input_pointers, req.event)
            except InvalidInputs as err:
                return Decision(verdict=Verdict.SKIP, reasons=[err.message]), {}
            return decision, redact(inputs)

        record = await self.triggers.decide_fire(trigger.trigger_id, req.fire_key, req.context, decide, trigger)
        actor = f"trigger:{trigger.name}"
        if record.created:
            await self.gate.record(
                flags, trigger.tenant_id, actor, "triggers.fire", trigger.name,
                AuditDecision.ALLOW if record.verdict is Verdict.FIRE else AuditDecision.DENY,
                "; ".join(record.reasons), req.context.event_id or "",
                {"verdict": record.verdict.value, "fire_key": req.fire_key, "source": req.context.source,
                 "template": trigger.template_key})
            log.info("trigger_decided", tenant_id=trigger.tenant_id, trigger=trigger.name,
                     verdict=record.verdict.value, source=req.context.source)
            metrics.trigger_decided(record.verdict.value, req.context.source)
        outcome = FireOutcome(trigger_name=trigger.name, verdict=record.verdict, reasons=record.reasons,
                              fire_id=record.id, run_workflow_id=record.run_workflow_id,
                              start_error=record.start_error)
        if record.verdict is not Verdict.FIRE or record.start_error:
            return outcome
        inputs = build_inputs(trigger.inputs, trigger.input_pointers, req.event)
        client = OperatorClient(self.temporal, self.settings, self.registry, store=self.store,
                                flags=self.gate.flags, gate=self.gate, principal=Principal.operator(actor))
        try:
            # a record decided just now has a key no run can hold yet: no store lookup needed
            await client.request_job(trigger.tenant_id, trigger.template_key, inputs, actor=actor,
                                     idempotency_key=f"trigger.{trigger.name}.{record.id}", known_new=record.created)
        except JobForgeError as err:
            if err.retryable:
                raise
            await self.triggers.set_start_error(record.id, f"{err.code}: {err.message}")
            return outcome.model_copy(update={"start_error": f"{err.code}: {err.message}"})
        return outcome
