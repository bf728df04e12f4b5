"""Triggers, their fires (gate decisions, dry-run records) and stored events."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg import AsyncCursor
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker

from shared.errors import InvalidRequest, TriggerExists, TriggerNotFound
from shared.models import EventEnvelope
from shared.security.redaction import redact
from shared.store import fast
from shared.store.columns import fit
from shared.store.paging import Page, decode_cursor, encode_cursor, page_size
from shared.store.store import Store, autocommit, row_of
from shared.store.tables import EventRow, TriggerFireRow, TriggerRow
from shared.triggers.gate import type_matches
from shared.triggers.models import (
    Decision,
    FireContext,
    FireRecord,
    RouteEventResult,
    StoredEvent,
    Trigger,
    TriggerKind,
    TriggerSpec,
    TriggerState,
)

#: decide(trigger, state, now) -> (decision, inputs to record)
Decide = Callable[[Trigger, TriggerState, datetime], tuple[Decision, dict[str, object]]]


def _trigger(row: TriggerRow) -> Trigger:
    return Trigger(**row.spec, trigger_id=row.trigger_id, created_at=row.created_at, updated_at=row.updated_at)


def _fire(row: TriggerFireRow, created: bool = True) -> FireRecord:
    return FireRecord(id=row.id, tenant_id=row.tenant_id, trigger_id=row.trigger_id, trigger_name=row.trigger_name,
                      fire_key=row.fire_key, source=row.source, verdict=row.verdict, reasons=list(row.reasons),
                      event_type=row.event_type, event_id=row.event_id, inputs=dict(row.inputs),
                      run_workflow_id=row.run_workflow_id, start_error=row.start_error, fired_at=row.fired_at,
                      created=created)


def matching(triggers: Sequence[Trigger], event_type: str) -> list[Trigger]:
    """Those of ``triggers`` whose event pattern matches ``event_type``."""
    return [t for t in triggers if t.event_pattern and type_matches(t.event_pattern, event_type)]


def _run_prefix(trigger: Trigger) -> str:
    """The run workflow id of a fire, but for the fire's id (the run's idempotency key names the fire)."""
    return f"jobforge/{trigger.tenant_id}/idem/trigger.{trigger.name}."


def _event(row: EventRow) -> StoredEvent:
    return StoredEvent(id=row.id, tenant_id=row.tenant_id, event_id=row.event_id, event_type=row.event_type,
                       trace_id=row.trace_id, source_app=row.source_app, source_module=row.source_module,
                       payload=dict(row.payload), occurred_at=row.occurred_at,
                       route_workflow_id=row.route_workflow_id, received_at=row.received_at,
                       routed_at=row.routed_at,
                       routing=RouteEventResult.model_validate(row.routing) if row.routing is not None else None,
                       actor=row.actor)


class TriggerStore:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._engine = store.engine
        self._session = async_sessionmaker(store.engine, expire_on_commit=False)
        #: reads and single-statement writes: each statement commits by itself
        self._auto = async_sessionmaker(autocommit(store.engine), expire_on_commit=False)

    # -- triggers ---------------------------------------------------------------------------------

    async def create(self, spec: TriggerSpec) -> Trigger:
        row = TriggerRow(trigger_id=uuid.uuid4().hex, tenant_id=spec.tenant_id, name=spec.name, kind=spec.kind.value,
                         template_key=spec.template_key, event_pattern=spec.event_pattern, enabled=spec.enabled,
                         spec=spec.model_dump(mode="json"))
        try:
            async with self._session.begin() as session:
                session.add(row)
        except IntegrityError:
            raise TriggerExists(spec.name) from None
        return await self.get(spec.tenant_id, spec.name)

    async def get(self, tenant_id: str, name: str) -> Trigger:
        stmt = select(TriggerRow).where(TriggerRow.tenant_id == tenant_id, TriggerRow.name == name)
        async with self._auto() as session:
            row = (await session.execute(stmt)).scalar_one_or_none()
        if row is None:
            raise TriggerNotFound(name)
        return _trigger(row)

    async def get_by_id(self, trigger_id: str) -> Trigger:
        async with fast.connection(self._engine) as conn:
            cur = conn.cursor(row_factory=dict_row)
            row = await (await cur.execute("SELECT * FROM triggers WHERE trigger_id = %(id)s",
                                           {"id": trigger_id})).fetchone()
        if row is None:
            raise TriggerNotFound(trigger_id)
        return _trigger(row_of(row))

    async def list(self, tenant_id: str, kind: TriggerKind | None = None) -> Sequence[Trigger]:
        stmt = select(TriggerRow).where(TriggerRow.tenant_id == tenant_id).order_by(TriggerRow.name)
        if kind is not None:
            stmt = stmt.where(TriggerRow.kind == kind.value)
        async with self._auto() as session:
            return [_trigger(r) for r in (await session.execute(stmt)).scalars()]

    async def set_enabled(self, tenant_id: str, name: str, enabled: bool) -> Trigger:
        trigger = await self.get(tenant_id, name)
        return await self.save(trigger.model_copy(update={"enabled": enabled}))

    async def save(self, trigger: Trigger) -> Trigger:
        """Write ``trigger``'s spec (what may change: times, inputs, safety, enabled, the Schedule's spec)."""
        spec = trigger.model_dump(mode="json", include={*TriggerSpec.model_fields, "schedule_spec"})
        stmt = (update(TriggerRow).where(TriggerRow.trigger_id == trigger.trigger_id)
                .values(enabled=trigger.enabled, spec=spec, updated_at=func.now()))
        async with self._session.begin() as session:
            if not getattr(await session.execute(stmt), "rowcount", 1):
                raise TriggerNotFound(trigger.name)
        return await self.get(trigger.tenant_id, trigger.name)

    async def delete(self, tenant_id: str, name: str) -> Trigger:
        trigger = await self.get(tenant_id, name)
        async with self._session.begin() as session:
            await session.execute(delete(TriggerRow).where(TriggerRow.trigger_id == trigger.trigger_id))
        return trigger

    async def matching(self, tenant_id: str, event_type: str) -> Sequence[Trigger]:
        """The tenant's event triggers whose pattern matches ``event_type`` (enabled or not: the gate says)."""
        return matching(await self.event_triggers(tenant_id), event_type)

    async def event_triggers(self, tenant_id: str) -> Sequence[Trigger]:
        """The tenant's event triggers, by name (to match many events against, see :func:`matching`)."""
        async with fast.connection(self._engine) as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute("SELECT * FROM triggers WHERE tenant_id = %(t)s AND kind = %(kind)s ORDER BY name",
                              {"t": tenant_id, "kind": TriggerKind.EVENT.value})
            rows = await cur.fetchall()
        return [_trigger(row_of(row)) for row in rows]

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
        async with fast.connection(self._engine) as conn:
            cur = conn.cursor(row_factory=dict_row)
            if trigger is None or trigger.trigger_id != trigger_id:
                row = await (await cur.execute("SELECT * FROM triggers WHERE trigger_id = %(id)s",
                                               {"id": trigger_id})).fetchone()
                if row is None:
                    raise TriggerNotFound(trigger_id)
                trigger = _trigger(row_of(row))
            if not (trigger.safety.cooldown_seconds or trigger.safety.max_runs):
                return await self._decide_stateless(cur, trigger, fire_key, ctx, decide)
        return await self._decide_locked(trigger_id, fire_key, ctx, decide)

    async def _decide_stateless(self, cur: AsyncCursor[dict[str, Any]], trigger: Trigger, fire_key: str,
                                ctx: FireContext, decide: Decide) -> FireRecord:
        # no cooldown and no max-runs: the decision depends on no state and on no clock
        decision, inputs = decide(trigger, TriggerState(), datetime.now(UTC))
        fires = decision.verdict.value == "fire"
        inserted = await (await cur.execute(
            "WITH fire AS (SELECT nextval(pg_get_serial_sequence('trigger_fires', 'id')) AS id) "
            "INSERT INTO trigger_fires (id, tenant_id, trigger_id, trigger_name, fire_key, source, verdict, "
            "reasons, event_type, event_id, inputs, run_workflow_id, start_error, fired_at) "
            "SELECT fire.id, %(tenant_id)s, %(trigger_id)s, %(trigger_name)s, %(fire_key)s, %(source)s, "
            "%(verdict)s, %(reasons)s, %(event_type)s, %(event_id)s, %(inputs)s, "
            "CASE WHEN %(fires)s THEN %(run_prefix)s::text || fire.id END, '', clock_timestamp() FROM fire "
            "ON CONFLICT (fire_key) DO NOTHING RETURNING *",
            {"tenant_id": trigger.tenant_id, "trigger_id": trigger.trigger_id, "trigger_name": trigger.name,
             "fire_key": fire_key, "source": ctx.source, "verdict": decision.verdict.value,
             "reasons": Jsonb(decision.reasons), "event_type": ctx.event_type, "event_id": ctx.event_id,
             "inputs": Jsonb(inputs), "fires": fires,
             "run_prefix": _run_prefix(trigger)})).fetchone()
        if inserted is not None:
            return _fire(row_of(inserted))
        # decided before (a retry), or at this very moment by another worker
        existing = await (await cur.execute("SELECT * FROM trigger_fires WHERE fire_key = %(key)s",
                                            {"key": fire_key})).fetchone()
        assert existing is not None
        return _fire(row_of(existing), created=False)

    @staticmethod
    def _fire_row(trigger: Trigger, fire_id: int, fire_key: str, ctx: FireContext, decision: Decision,
                  inputs: dict[str, object], now: datetime) -> TriggerFireRow:
        fires = decision.verdict.value == "fire"
        return TriggerFireRow(
            id=fire_id, tenant_id=trigger.tenant_id, trigger_id=trigger.trigger_id, trigger_name=trigger.name,
            fire_key=fire_key, source=ctx.source, verdict=decision.verdict.value, reasons=decision.reasons,
            event_type=ctx.event_type, event_id=ctx.event_id, inputs=inputs, fired_at=now, start_error="",
            run_workflow_id=f"{_run_prefix(trigger)}{fire_id}" if fires else None)

    async def _decide_locked(self, trigger_id: str, fire_key: str, ctx: FireContext, decide: Decide) -> FireRecord:
        """:meth:`decide_fire` for a trigger with cooldown or max-runs: in a transaction, under its row lock."""
        async with self._session.begin() as session:
            row = (await session.execute(select(TriggerRow).where(TriggerRow.trigger_id == trigger_id)
                                         .with_for_update())).scalar_one_or_none()
            if row is None:
                raise TriggerNotFound(trigger_id)
            trigger = _trigger(row)
            existing = (await session.execute(
                select(TriggerFireRow).where(TriggerFireRow.fire_key == fire_key))).scalar_one_or_none()
            if existing is not None:
                return _fire(existing, created=False)
            # one statement for the clock, the record's id and the trigger's fire history
            window = timedelta(seconds=trigger.safety.window_seconds)
            now_col = func.clock_timestamp()
            fired = TriggerFireRow.verdict == "fire"
            state_row = (await session.execute(
                select(now_col,
                       func.nextval(func.pg_get_serial_sequence("trigger_fires", "id")),
                       select(func.max(TriggerFireRow.fired_at).filter(fired))
                       .where(TriggerFireRow.trigger_id == trigger_id).scalar_subquery(),
                       select(func.count().filter(fired, TriggerFireRow.fired_at > now_col - window))
                       .where(TriggerFireRow.trigger_id == trigger_id).scalar_subquery()))).one()
            now: datetime = state_row[0]
            state = TriggerState(last_fired_at=state_row[2], fires_in_window=int(state_row[3] or 0))
            decision, inputs = decide(trigger, state, now)
            record = self._fire_row(trigger, int(state_row[1]), fire_key, ctx, decision, inputs, now)
            session.add(record)
            await session.flush()
            return _fire(record)

    async def set_start_error(self, fire_id: int, error: str) -> None:
        async with self._session.begin() as session:
            await session.execute(update(TriggerFireRow).where(TriggerFireRow.id == fire_id)
                                  .values(**fit("trigger_fires", {"start_error": error})))

    async def count_fires(self, trigger_id: str, limit: int = 1000) -> int:
        """How many fires a trigger has recorded, counted up to ``limit`` (an index range, no rows read)."""
        async with fast.connection(self._engine) as conn:
            row = await (await conn.execute(
                "SELECT count(*) FROM (SELECT 1 FROM trigger_fires WHERE trigger_id = %s LIMIT %s) AS f",
                (trigger_id, limit))).fetchone()
        return int(row[0]) if row else 0

    async def fires(self, tenant_id: str, *, trigger_name: str | None = None, verdict: str | None = None,
                    limit: int = 100) -> Sequence[FireRecord]:
        stmt = select(TriggerFireRow).where(TriggerFireRow.tenant_id == tenant_id)
        if trigger_name:
            stmt = stmt.where(TriggerFireRow.trigger_name == trigger_name)
        if verdict:
            stmt = stmt.where(TriggerFireRow.verdict == verdict)
        stmt = stmt.order_by(TriggerFireRow.fired_at.desc(), TriggerFireRow.id.desc()).limit(limit)
        async with self._auto() as session:
            return [_fire(r) for r in (await session.execute(stmt)).scalars()]

    # -- events -----------------------------------------------------------------------------------

    async def store_event(self, event: EventEnvelope, trace_id: str, route_workflow_id: str,
                          actor: str = "") -> StoredEvent:
        """Persist an admitted event once (a retried activity finds the same row)."""
        params = {"tenant": event.tenant_id, "eid": event.event_id, "etype": event.event_type, "trace": trace_id,
                  "app": event.source_app, "module": event.source_module,
                  "payload": Jsonb(redact(event.payload, keep_types=True)),
                  "at": event.occurred_at, "route": route_workflow_id,
                  "actor": fit("events", {"actor": actor})["actor"]}
        async with fast.connection(self._engine) as conn:  # insert-or-nothing, then read: no transaction needed
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                "INSERT INTO events (tenant_id, event_id, event_type, trace_id, source_app, source_module, payload, "
                "occurred_at, route_workflow_id, actor) VALUES (%(tenant)s, %(eid)s, %(etype)s, %(trace)s, %(app)s, "
                "%(module)s, %(payload)s, %(at)s, %(route)s, %(actor)s) ON CONFLICT (route_workflow_id) DO NOTHING",
                params)
            row = await (await cur.execute("SELECT * FROM events WHERE route_workflow_id = %(route)s",
                                           params)).fetchone()
        assert row is not None
        return _event(row_of(row))

    async def insert_event(self, event: EventEnvelope, trace_id: str, route_key: str, actor: str,
                           conn: fast.Conn | None = None) -> None:
        """Persist an admitted event once (one statement; a retried submission finds the row there), on
        ``conn`` when given (the gate stores an event in the transaction that claims it).

        The payload is kept redacted (:func:`shared.security.redaction.redact`, types kept): secrets
        a product app sent are not at rest, and what triggers map into run inputs never carries one.
        """
        args = (event.tenant_id, event.event_id, event.event_type, trace_id, event.source_app, event.source_module,
                Jsonb(redact(event.payload, keep_types=True)), event.occurred_at, route_key,
                fit("events", {"actor": actor})["actor"])
        sql = ("INSERT INTO events (tenant_id, event_id, event_type, trace_id, source_app, source_module, payload, "
               "occurred_at, route_workflow_id, actor) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
               "ON CONFLICT (route_workflow_id) DO NOTHING")
        if conn is not None:
            await conn.execute(sql, args)
            return
        async with fast.connection(self._engine) as own:
            await own.execute(sql, args)

    async def mark_routed(self, results: Sequence[RouteEventResult]) -> None:
        """Store how events were routed, in one statement (a retried routing writes the same result again)."""
        if not results:
            return
        async with fast.connection(self._engine) as conn:
            await conn.execute(
                "UPDATE events SET routed_at = coalesce(events.routed_at, now()), routing = done.routing "
                "FROM unnest(%s::bigint[], %s::jsonb[]) AS done(id, routing) WHERE events.id = done.id",
                ([r.event_row_id for r in results], [Jsonb(r.model_dump(mode="json")) for r in results]))

    async def stored_events(self, route_keys: Sequence[str]) -> dict[str, StoredEvent]:
        """The stored events of these route keys (one statement), by route key; missing keys are absent."""
        async with fast.connection(self._engine) as conn:
            cur = conn.cursor(row_factory=dict_row)
            rows = await (await cur.execute("SELECT * FROM events WHERE route_workflow_id = ANY(%s)",
                                            (list(route_keys),))).fetchall()
        return {row["route_workflow_id"]: _event(row_of(row)) for row in rows}

    async def unrouted(self, tenant_id: str, older_than: timedelta, limit: int) -> Sequence[str]:
        """Route keys of a tenant's stored events not routed yet and received before ``older_than`` ago."""
        async with fast.connection(self._engine) as conn:
            rows = await (await conn.execute(
                "SELECT route_workflow_id FROM events WHERE tenant_id = %s AND routed_at IS NULL "
                "AND received_at < now() - %s ORDER BY received_at, id LIMIT %s",
                (tenant_id, older_than, limit))).fetchall()
        return [row[0] for row in rows]

    async def drop_unrouted(self, route_key: str) -> None:
        """Forget a stored event that never reached its router (the submitter was told to retry)."""
        async with fast.connection(self._engine) as conn:
            await conn.execute("DELETE FROM events WHERE route_workflow_id = %s AND routed_at IS NULL", (route_key,))

    async def event(self, tenant_id: str, route_key: str) -> StoredEvent | None:
        """The stored event of one admitted copy (its route key, ``shared.events.route_key``), if stored yet."""
        stmt = select(EventRow).where(EventRow.tenant_id == tenant_id, EventRow.route_workflow_id == route_key)
        async with self._auto() as session:
            row = (await session.execute(stmt)).scalar_one_or_none()
        return _event(row) if row is not None else None

    async def events(self, tenant_id: str, *, event_type: str | None = None, limit: int = 100) -> Sequence[StoredEvent]:
        stmt = select(EventRow).where(EventRow.tenant_id == tenant_id)
        if event_type:
            stmt = stmt.where(EventRow.event_type == event_type)
        stmt = stmt.order_by(EventRow.received_at.desc(), EventRow.id.desc()).limit(limit)
        async with self._auto() as session:
            return [_event(r) for r in (await session.execute(stmt)).scalars()]

    async def page_events(self, tenant_id: str, *, event_type: str | None = None, source_app: str | None = None,
                          cursor: str | None = None, limit: int = 50) -> Page[StoredEvent]:
        """A page of the tenant's events, newest first, of one type and/or source (keyset: ``cursor``)."""
        limit = page_size(limit)
        params: dict[str, object] = {"t": tenant_id, "limit": limit + 1}
        clauses = ["tenant_id = %(t)s"]
        if event_type:
            clauses.append("event_type = %(type)s")
            params["type"] = event_type
        if source_app is not None and source_app != "":
            clauses.append("source_app = %(source)s")
            params["source"] = source_app
        if cursor:
            params["c_at"], c_id = decode_cursor(cursor)
            params["c_id"] = _int_id(c_id)
            clauses.append("(received_at, id) < (%(c_at)s, %(c_id)s)")
        sql = (f"SELECT * FROM events WHERE {' AND '.join(clauses)} "  # the clauses are constants; values are bound
               "ORDER BY received_at DESC, id DESC LIMIT %(limit)s")
        async with fast.connection(self._engine) as conn:
            cur = conn.cursor(row_factory=dict_row)
            rows = await (await cur.execute(sql, params)).fetchall()
        events = [_event(row_of(row)) for row in rows[:limit]]
        more = len(rows) > limit
        return Page(events, encode_cursor(events[-1].received_at, events[-1].id) if more else None)

    async def event_by_id(self, tenant_id: str, row_id: int) -> StoredEvent | None:
        """One of the tenant's stored events by its row id (another tenant's id finds nothing)."""
        async with fast.connection(self._engine) as conn:
            cur = conn.cursor(row_factory=dict_row)
            row = await (await cur.execute("SELECT * FROM events WHERE id = %(id)s AND tenant_id = %(t)s",
                                           {"id": row_id, "t": tenant_id})).fetchone()
        return _event(row_of(row)) if row is not None else None

    async def event_counts(self, tenant_id: str, since: datetime, bucket_seconds: int = 60) -> dict[datetime, int]:
        """How many of the tenant's events were admitted and stored since ``since``, per time bucket."""
        async with fast.connection(self._engine) as conn:
            rows = await (await conn.execute(
                "SELECT date_bin(make_interval(secs => %(b)s), received_at, TIMESTAMPTZ '2000-01-01 00:00Z'), "
                "count(*) FROM events WHERE tenant_id = %(t)s AND received_at >= %(since)s GROUP BY 1",
                {"t": tenant_id, "since": since, "b": bucket_seconds})).fetchall()
        return {row[0]: int(row[1]) for row in rows}

    async def page_fires(self, tenant_id: str, *, trigger_id: str | None = None, verdict: str | None = None,
                         cursor: str | None = None, limit: int = 50) -> Page[FireRecord]:
        """A page of the tenant's fire decisions (of one trigger, of one verdict), newest first."""
        limit = page_size(limit)
        params: dict[str, object] = {"t": tenant_id, "limit": limit + 1}
        clauses = ["tenant_id = %(t)s"]
        if trigger_id:
            clauses.append("trigger_id = %(trigger)s")
            params["trigger"] = trigger_id
        if verdict:
            clauses.append("verdict = %(verdict)s")
            params["verdict"] = verdict
        if cursor:
            params["c_at"], c_id = decode_cursor(cursor)
            params["c_id"] = _int_id(c_id)
            clauses.append("(fired_at, id) < (%(c_at)s, %(c_id)s)")
        sql = (f"SELECT * FROM trigger_fires WHERE {' AND '.join(clauses)} "  # constant clauses, bound values
               "ORDER BY fired_at DESC, id DESC LIMIT %(limit)s")
        async with fast.connection(self._engine) as conn:
            cur = conn.cursor(row_factory=dict_row)
            rows = await (await cur.execute(sql, params)).fetchall()
        fires = [_fire(row_of(row)) for row in rows[:limit]]
        more = len(rows) > limit
        return Page(fires, encode_cursor(fires[-1].fired_at, fires[-1].id) if more else None)


def _int_id(ident: str | int) -> int:
    if isinstance(ident, int):
        return ident
    try:
        return int(ident)
    except ValueError:
        raise InvalidRequest("the page cursor is not valid; start again from the first page", field="cursor") from None
