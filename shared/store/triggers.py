"""Triggers, their fires (gate decisions, dry-run records) and stored events."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from psycopg import AsyncCursor
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from jobforge.errors import InvalidRequest, TriggerExists, TriggerNotFound
from jobforge.models import EventEnvelope, FireRecord, RouteEventResult, Trigger, TriggerKind, TriggerSpec
from shared.security.redaction import redact
from shared.store import statements as sql
from shared.store.columns import fit
from shared.store.paging import Page, decode_cursor, encode_cursor, page_size
from shared.triggers.gate import type_matches
from shared.triggers.models import Decision, FireContext, StoredEvent, TriggerState

if TYPE_CHECKING:
    from shared.store.store import Store

Row = Mapping[str, Any]

#: decide(trigger, state, now) -> (decision, inputs to record)
Decide = Callable[[Trigger, TriggerState, datetime], tuple[Decision, dict[str, object]]]


def _trigger(row: Row) -> Trigger:
    return Trigger(**row["spec"], trigger_id=row["trigger_id"], created_at=row["created_at"],
                   updated_at=row["updated_at"])


def _fire(row: Row, created: bool = True) -> FireRecord:
    return FireRecord(id=row["id"], tenant_id=row["tenant_id"], trigger_id=row["trigger_id"],
                      trigger_name=row["trigger_name"], fire_key=row["fire_key"], source=row["source"],
                      verdict=row["verdict"], reasons=list(row["reasons"]), event_type=row["event_type"],
                      event_id=row["event_id"], inputs=dict(row["inputs"]), run_workflow_id=row["run_workflow_id"],
                      start_error=row["start_error"], fired_at=row["fired_at"], created=created)


def matching(triggers: Sequence[Trigger], event_type: str) -> list[Trigger]:
    """Those of ``triggers`` whose event pattern matches ``event_type``."""
    return [t for t in triggers if t.event_pattern and type_matches(t.event_pattern, event_type)]


def _run_prefix(trigger: Trigger) -> str:
    """The run workflow id of a fire, but for the fire's id (the run's idempotency key names the fire)."""
    return f"jobforge/{trigger.tenant_id}/idem/trigger.{trigger.name}."


def _event(row: Row) -> StoredEvent:
    return StoredEvent(id=row["id"], tenant_id=row["tenant_id"], event_id=row["event_id"],
                       event_type=row["event_type"], trace_id=row["trace_id"], source_app=row["source_app"],
                       source_module=row["source_module"], payload=dict(row["payload"]),
                       occurred_at=row["occurred_at"], route_workflow_id=row["route_workflow_id"],
                       received_at=row["received_at"], routed_at=row["routed_at"],
                       routing=(RouteEventResult.model_validate(row["routing"]) if row["routing"] is not None
                                else None),
                       actor=row["actor"])


class TriggerStore:
    """Triggers, fires and stored events (:attr:`shared.store.Store.triggers`)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def _one(self, statement: str, params: Mapping[str, object] | Sequence[object]) -> Row | None:
        async with self._store.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            return await (await cur.execute(statement, params)).fetchone()

    async def _all(self, statement: str, params: Mapping[str, object] | Sequence[object]) -> list[Row]:
        async with self._store.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            return list(await (await cur.execute(statement, params)).fetchall())

    # -- triggers ---------------------------------------------------------------------------------

    async def create(self, spec: TriggerSpec) -> Trigger:
        values = fit("triggers", {"trigger_id": uuid.uuid4().hex, "tenant_id": spec.tenant_id, "name": spec.name,
                                  "kind": spec.kind.value, "template_key": spec.template_key,
                                  "event_pattern": spec.event_pattern, "enabled": spec.enabled})
        row = await self._one(sql.TRIGGER_CREATE, {**values, "spec": Jsonb(spec.model_dump(mode="json"))})
        if row is None:
            raise TriggerExists(spec.name)
        return _trigger(row)

    async def get(self, tenant_id: str, name: str) -> Trigger:
        row = await self._one(sql.TRIGGER_BY_NAME, {"t": tenant_id, "name": name})
        if row is None:
            raise TriggerNotFound(name)
        return _trigger(row)

    async def get_by_id(self, trigger_id: str) -> Trigger:
        row = await self._one(sql.TRIGGER_BY_ID, {"id": trigger_id})
        if row is None:
            raise TriggerNotFound(trigger_id)
        return _trigger(row)

    async def list(self, tenant_id: str, kind: TriggerKind | None = None) -> Sequence[Trigger]:
        rows = await (self._all(sql.TRIGGERS_OF_TENANT, {"t": tenant_id}) if kind is None
                      else self._all(sql.TRIGGERS_OF_KIND, {"t": tenant_id, "kind": kind.value}))
        return [_trigger(row) for row in rows]

    async def set_enabled(self, tenant_id: str, name: str, enabled: bool) -> Trigger:
        trigger = await self.get(tenant_id, name)
        return await self.save(trigger.model_copy(update={"enabled": enabled}))

    async def save(self, trigger: Trigger) -> Trigger:
        """Write ``trigger``'s spec (what may change: times, inputs, safety, enabled, the Schedule's spec)."""
        spec = trigger.model_dump(mode="json", include={*TriggerSpec.model_fields, "schedule_spec"})
        async with self._store.connection() as conn:
            cur = await conn.execute(sql.TRIGGER_SAVE, {"enabled": trigger.enabled, "spec": Jsonb(spec),
                                                        "id": trigger.trigger_id})
        if not cur.rowcount:
            raise TriggerNotFound(trigger.name)
        return await self.get(trigger.tenant_id, trigger.name)

    async def delete(self, tenant_id: str, name: str) -> Trigger:
        trigger = await self.get(tenant_id, name)
        async with self._store.connection() as conn:
            await conn.execute(sql.TRIGGER_DELETE, {"id": trigger.trigger_id})
        return trigger

    async def matching(self, tenant_id: str, event_type: str) -> Sequence[Trigger]:
        """The tenant's event triggers whose pattern matches ``event_type`` (enabled or not: the gate says)."""
        return matching(await self.event_triggers(tenant_id), event_type)

    async def event_triggers(self, tenant_id: str) -> Sequence[Trigger]:
        """The tenant's event triggers, by name (to match many events against, see :func:`matching`)."""
        return [_trigger(row) for row in await self._all(sql.TRIGGERS_OF_KIND,
                                                         {"t": tenant_id, "kind": TriggerKind.EVENT.value})]

    # -- fires ------------------------------------------------------------------------------------

    async def decide_fire(self, trigger_id: str, fire_key: str, ctx: FireContext, decide: Decide,
                          trigger: Trigger | None = None) -> FireRecord:
        """Run the gate for one fire and record the decision.

        A trigger with a cooldown or a max-runs limit is decided while holding its row lock: two fires
        racing on it (two workers, a Schedule fire and a manual fire) take turns, so the second sees
        the first in its state and the limits hold exactly. A trigger without either limit has no
        state to race on: it is decided without a lock or a transaction, in one statement that takes
        the record's id and the database clock and inserts the record unless this fire was decided
        already, so its fires run in parallel. ``trigger``, when the caller has just read it, saves
        reading it again for such a trigger. A retried fire (same ``fire_key``) returns the recorded
        decision instead of deciding again.
        """
        fire_key = fit("trigger_fires", {"fire_key": fire_key})["fire_key"]
        async with self._store.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            if trigger is None or trigger.trigger_id != trigger_id:
                row = await (await cur.execute(sql.TRIGGER_BY_ID, {"id": trigger_id})).fetchone()
                if row is None:
                    raise TriggerNotFound(trigger_id)
                trigger = _trigger(row)
            if not (trigger.safety.cooldown_seconds or trigger.safety.max_runs):
                return await self._decide_stateless(cur, trigger, fire_key, ctx, decide)
            async with conn.transaction():
                return await self._decide_locked(cur, trigger_id, fire_key, ctx, decide)

    @staticmethod
    def _values(trigger: Trigger, fire_key: str, ctx: FireContext, decision: Decision,
                inputs: dict[str, object]) -> dict[str, object]:
        """The columns of a fire's record that do not depend on its id and time."""
        row = fit("trigger_fires", {"tenant_id": trigger.tenant_id, "trigger_id": trigger.trigger_id,
                                    "trigger_name": trigger.name, "fire_key": fire_key, "source": ctx.source,
                                    "verdict": decision.verdict.value, "event_type": ctx.event_type,
                                    "event_id": ctx.event_id})
        return {**row, "reasons": Jsonb(decision.reasons), "inputs": Jsonb(inputs)}

    async def _decide_stateless(self, cur: AsyncCursor[dict[str, Any]], trigger: Trigger, fire_key: str,
                                ctx: FireContext, decide: Decide) -> FireRecord:
        # no cooldown and no max-runs: the decision depends on no state and on no clock
        decision, inputs = decide(trigger, TriggerState(), datetime.now(UTC))
        params = {**self._values(trigger, fire_key, ctx, decision, inputs),
                  "fires": decision.verdict.value == "fire", "run_prefix": _run_prefix(trigger)}
        inserted = await (await cur.execute(sql.FIRE_RECORD_STATELESS, params)).fetchone()
        if inserted is not None:
            return _fire(inserted)
        # decided before (a retry), or at this very moment by another worker
        existing = await (await cur.execute(sql.FIRE_BY_KEY, {"key": fire_key})).fetchone()
        assert existing is not None
        return _fire(existing, created=False)

    async def _decide_locked(self, cur: AsyncCursor[dict[str, Any]], trigger_id: str, fire_key: str,
                             ctx: FireContext, decide: Decide) -> FireRecord:
        """:meth:`decide_fire` for a trigger with cooldown or max-runs: inside the caller's transaction,
        under the trigger's row lock."""
        row = await (await cur.execute(sql.TRIGGER_LOCK, {"id": trigger_id})).fetchone()
        if row is None:
            raise TriggerNotFound(trigger_id)
        trigger = _trigger(row)
        existing = await (await cur.execute(sql.FIRE_BY_KEY, {"key": fire_key})).fetchone()
        if existing is not None:
            return _fire(existing, created=False)
        window = timedelta(seconds=trigger.safety.window_seconds)
        state_row = await (await cur.execute(sql.FIRE_STATE, {"id": trigger_id, "window": window})).fetchone()
        assert state_row is not None
        now: datetime = state_row["now"]
        state = TriggerState(last_fired_at=state_row["last_fired_at"],
                             fires_in_window=int(state_row["fires_in_window"] or 0))
        decision, inputs = decide(trigger, state, now)
        fire_id = int(state_row["id"])
        fires = decision.verdict.value == "fire"
        run_workflow_id = fit("trigger_fires", {"run_workflow_id": f"{_run_prefix(trigger)}{fire_id}"})[
            "run_workflow_id"] if fires else None
        recorded = await (await cur.execute(sql.FIRE_RECORD, {
            **self._values(trigger, fire_key, ctx, decision, inputs), "id": fire_id, "fired_at": now,
            "run_workflow_id": run_workflow_id})).fetchone()
        assert recorded is not None
        return _fire(recorded)

    async def set_start_error(self, fire_id: int, error: str) -> None:
        async with self._store.connection() as conn:
            await conn.execute(sql.FIRE_SET_START_ERROR, {**fit("trigger_fires", {"start_error": error}),
                                                          "id": fire_id})

    async def count_fires(self, trigger_id: str, limit: int = 1000) -> int:
        """How many fires a trigger has recorded, counted up to ``limit`` (an index range, no rows read)."""
        async with self._store.connection() as conn:
            row = await (await conn.execute(sql.FIRES_COUNT, (trigger_id, limit))).fetchone()
        return int(row[0]) if row else 0

    async def fires(self, tenant_id: str, *, trigger_name: str | None = None, verdict: str | None = None,
                    limit: int = 100) -> Sequence[FireRecord]:
        statement = sql.fires(trigger_name=bool(trigger_name), verdict=bool(verdict))
        rows = await self._all(statement, {"t": tenant_id, "trigger_name": trigger_name, "verdict": verdict,
                                           "limit": limit})
        return [_fire(row) for row in rows]

    # -- events -----------------------------------------------------------------------------------

    @staticmethod
    def _event_values(event: EventEnvelope, trace_id: str, route_key: str, actor: str) -> dict[str, object]:
        """The columns of an admitted event's row; the payload is kept redacted
        (:func:`shared.security.redaction.redact`, types kept): secrets a product app sent are not at rest,
        and what triggers map into run inputs never carries one."""
        row = fit("events", {"tenant_id": event.tenant_id, "event_id": event.event_id, "event_type": event.event_type,
                             "trace_id": trace_id, "source_app": event.source_app,
                             "source_module": event.source_module, "route_workflow_id": route_key, "actor": actor})
        return {**row, "payload": Jsonb(redact(event.payload, keep_types=True)), "occurred_at": event.occurred_at}

    def claim_row(self, event: EventEnvelope, trace_id: str, route_prefix: str, actor: str) -> dict[str, object]:
        """The row of an admitted event for the dedupe claim that stores it
        (:meth:`~shared.store.dedupe.EventDeduper.claim`): its route key is ``route_prefix`` completed by
        the claim's statement with the first sighting (:func:`shared.events.route_key`)."""
        values = self._event_values(event, trace_id, route_prefix, actor)
        values["route_prefix"] = values.pop("route_workflow_id")
        return values

    async def store_event(self, event: EventEnvelope, trace_id: str, route_workflow_id: str,
                          actor: str = "") -> StoredEvent:
        """Persist an admitted event once (a retried activity finds the same row)."""
        values = self._event_values(event, trace_id, route_workflow_id, actor)
        async with self._store.connection() as conn:  # insert-or-nothing, then read: no transaction needed
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(sql.EVENT_INSERT, values)
            row = await (await cur.execute(sql.EVENT_BY_ROUTE_KEY, {"route": values["route_workflow_id"]})).fetchone()
        assert row is not None
        return _event(row)

    async def insert_event(self, event: EventEnvelope, trace_id: str, route_key: str, actor: str) -> None:
        """Persist an admitted event once (one statement; a retried submission finds the row there)."""
        async with self._store.connection() as conn:
            await conn.execute(sql.EVENT_INSERT, self._event_values(event, trace_id, route_key, actor))

    async def mark_routed(self, results: Sequence[RouteEventResult]) -> None:
        """Store how events were routed, in one statement (a retried routing writes the same result again)."""
        if not results:
            return
        async with self._store.connection() as conn:
            await conn.execute(sql.EVENTS_MARK_ROUTED, ([r.event_row_id for r in results],
                                                        [Jsonb(r.model_dump(mode="json")) for r in results]))

    async def stored_events(self, route_keys: Sequence[str]) -> dict[str, StoredEvent]:
        """The stored events of these route keys (one statement), by route key; missing keys are absent."""
        rows = await self._all(sql.EVENTS_BY_ROUTE_KEYS, (list(route_keys),))
        return {row["route_workflow_id"]: _event(row) for row in rows}

    async def unrouted(self, tenant_id: str, older_than: timedelta, limit: int) -> Sequence[str]:
        """Route keys of a tenant's stored events not routed yet and received before ``older_than`` ago."""
        async with self._store.connection() as conn:
            rows = await (await conn.execute(sql.EVENTS_UNROUTED, (tenant_id, older_than, limit))).fetchall()
        return [row[0] for row in rows]

    async def drop_unrouted(self, route_key: str) -> None:
        """Forget a stored event that never reached its router (the submitter was told to retry)."""
        async with self._store.connection() as conn:
            await conn.execute(sql.EVENT_DROP_UNROUTED, (route_key,))

    async def event(self, tenant_id: str, route_key: str) -> StoredEvent | None:
        """The stored event of one admitted copy (its route key, ``shared.events.route_key``), if stored yet."""
        row = await self._one(sql.EVENT_OF_TENANT_BY_ROUTE_KEY, {"t": tenant_id, "route": route_key})
        return _event(row) if row is not None else None

    async def events(self, tenant_id: str, *, event_type: str | None = None, limit: int = 100) -> Sequence[StoredEvent]:
        rows = await self._all(sql.events(event_type=bool(event_type)),
                               {"t": tenant_id, "type": event_type, "limit": limit})
        return [_event(row) for row in rows]

    async def page_events(self, tenant_id: str, *, event_type: str | None = None, source_app: str | None = None,
                          cursor: str | None = None, limit: int = 50) -> Page[StoredEvent]:
        """A page of the tenant's events, newest first, of one type and/or source (keyset: ``cursor``)."""
        limit = page_size(limit)
        params: dict[str, object] = {"t": tenant_id, "limit": limit + 1, "type": event_type, "source": source_app}
        if cursor:
            params["c_at"], c_id = decode_cursor(cursor)
            params["c_id"] = _int_id(c_id)
        statement = sql.events(event_type=bool(event_type), source_app=source_app is not None and source_app != "",
                               after_cursor=bool(cursor))
        rows = await self._all(statement, params)
        events = [_event(row) for row in rows[:limit]]
        more = len(rows) > limit
        return Page(events, encode_cursor(events[-1].received_at, events[-1].id) if more else None)

    async def event_by_id(self, tenant_id: str, row_id: int) -> StoredEvent | None:
        """One of the tenant's stored events by its row id (another tenant's id finds nothing)."""
        row = await self._one(sql.EVENT_BY_ID, {"id": row_id, "t": tenant_id})
        return _event(row) if row is not None else None

    async def event_counts(self, tenant_id: str, since: datetime, bucket_seconds: int = 60) -> dict[datetime, int]:
        """How many of the tenant's events were admitted and stored since ``since``, per time bucket."""
        async with self._store.connection() as conn:
            rows = await (await conn.execute(sql.EVENT_COUNTS, {"t": tenant_id, "since": since,
                                                                "b": bucket_seconds})).fetchall()
        return {row[0]: int(row[1]) for row in rows}

    async def page_fires(self, tenant_id: str, *, trigger_id: str | None = None, verdict: str | None = None,
                         cursor: str | None = None, limit: int = 50) -> Page[FireRecord]:
        """A page of the tenant's fire decisions (of one trigger, of one verdict), newest first."""
        limit = page_size(limit)
        params: dict[str, object] = {"t": tenant_id, "limit": limit + 1, "trigger": trigger_id, "verdict": verdict}
        if cursor:
            params["c_at"], c_id = decode_cursor(cursor)
            params["c_id"] = _int_id(c_id)
        statement = sql.fires(trigger_id=bool(trigger_id), verdict=bool(verdict), after_cursor=bool(cursor))
        rows = await self._all(statement, params)
        fires = [_fire(row) for row in rows[:limit]]
        more = len(rows) > limit
        return Page(fires, encode_cursor(fires[-1].fired_at, fires[-1].id) if more else None)


def _int_id(ident: str | int) -> int:
    if isinstance(ident, int):
        return ident
    try:
        return int(ident)
    except ValueError:
        raise InvalidRequest("the page cursor is not valid; start again from the first page", field="cursor") from None
