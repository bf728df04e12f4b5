"""The narrow, typed interface to JobForge's PostgreSQL store.

Rows become frozen models at this boundary; callers never see SQLAlchemy objects.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import orjson
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb, set_json_dumps
from sqlalchemy import delete, func, or_, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from shared.errors import RunNotFound, StoreUnavailable
from shared.flags import Flag
from shared.models import ArtifactRecord, RunRecord, RunStatus, VerifyCacheEntry
from shared.security.limits import find_unstorable, pg_text, storable
from shared.store import direct, fast
from shared.store.paging import Page, decode_cursor, encode_cursor, page_size
from shared.store.tables import ArtifactRow, FlagOverrideRow, RunRow, VerifyCacheRow


def create_engine(url: str, pool_size: int = 5) -> AsyncEngine:
    """An async engine on ``url`` (``postgresql+psycopg://``; a bare ``postgresql://`` is upgraded)."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    # No pre-ping: it costs a round trip on every checkout, and the hot paths check out a connection
    # per statement. A connection that died with its server (a PostgreSQL restart) fails its next
    # statement instead (see `unreachable`), and the pool drops it (SQLAlchemy's whole pool, or the
    # one raw connection), so a restart costs each process a few such errors: activities retry them,
    # API callers get 503 store_unavailable with Retry-After.
    # hide_parameters: SQLAlchemy's error text would otherwise quote every statement's parameters
    # (run inputs, payloads) into whatever logs the error. JSON values are written storable: text the
    # gate did not refuse (a step's output in a summary) has NUL and unpaired surrogates replaced, so
    # PostgreSQL never rejects them (and never quotes them into its own log doing so).
    set_json_dumps(storable_json)
    engine = create_async_engine(url, pool_size=pool_size, pool_pre_ping=False, pool_recycle=3600,
                                 hide_parameters=True, json_serializer=storable_json)
    fast.attach(engine, pool_size)  # the hot path's raw connections (shared.store.fast)
    return engine


def storable_json(value: Any) -> str:
    """JSON text for a ``json``/``jsonb`` parameter, with text PostgreSQL cannot hold replaced."""
    value = storable(value)
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # integers beyond 64 bits, objects orjson does not know: the stdlib's rules
        return json.dumps(value, default=str)


def unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database could not be reached or the connection broke (retry later)."""
    return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError | OperationalError | InterfaceError
                      | ConnectionError) or (isinstance(exc, DBAPIError) and exc.connection_invalidated)


def autocommit(engine: AsyncEngine) -> AsyncEngine:
    """``engine`` (same pool) whose statements each commit on their own: no BEGIN/COMMIT round trips.

    For reads and for single statements that are atomic by themselves; anything that needs several
    statements to hold together uses the plain engine and a transaction.
    """
    return engine.execution_options(isolation_level="AUTOCOMMIT")


def row_of(values: Mapping[str, Any]) -> Any:
    """A raw row (column -> value) with the attribute access the ``_record``-style mappers use."""
    return SimpleNamespace(**values)


def _record(row: RunRow) -> RunRecord:
    return RunRecord(
        tenant_id=row.tenant_id, template_key=row.template_key, workflow_id=row.workflow_id,
        run_id=row.run_id, status=RunStatus(row.status), trace_id=row.trace_id, actor=row.actor,
        idempotency_key=row.idempotency_key, input_hash=row.input_hash, summary=row.summary or {},
        error=row.error, created_at=row.created_at, updated_at=row.updated_at, finished_at=row.finished_at,
    )


@dataclass(frozen=True, slots=True)
class RunFilter:
    """Which of a tenant's runs a page shows (every field optional; all given ones must hold)."""

    template_key: str | None = None
    status: RunStatus | None = None
    #: runs started by the fires of this trigger (its id)
    trigger_id: str | None = None
    trace_id: str | None = None
    #: created at or after / before
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class RunCount:
    """How many of a tenant's runs created in one time bucket have one status."""

    bucket: datetime
    status: RunStatus
    count: int


@dataclass(frozen=True, slots=True)
class RunDurations:
    """Wall-clock durations (created to finished) of one template's finished runs."""

    template_key: str
    runs: int
    p50_seconds: float
    p95_seconds: float


_PAGE_RUNS = {
    "template_key": "template_key = %(template_key)s",
    "status": "status = %(status)s",
    "trace_id": "trace_id = %(trace_id)s",
    "since": "created_at >= %(since)s",
    "until": "created_at < %(until)s",
    "trigger_id": ("workflow_id IN (SELECT run_workflow_id FROM trigger_fires WHERE trigger_id = %(trigger_id)s "
                   "AND run_workflow_id IS NOT NULL)"),
}
_FINAL = [status.value for status in RunStatus if status.is_final and status is not RunStatus.REJECTED]


class Store:
    """JobForge's persistent state. One instance per process, shared by its activities."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._session = async_sessionmaker(engine, expire_on_commit=False)
        #: reads and single-statement writes: each statement commits by itself
        self._auto = async_sessionmaker(autocommit(engine), expire_on_commit=False)

    @classmethod
    def from_url(cls, url: str, pool_size: int = 5) -> Store:
        return cls(create_engine(url, pool_size))

    async def close(self) -> None:
        await self.engine.dispose()

    async def ping(self) -> None:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except (OperationalError, DBAPIError, OSError) as exc:
            raise StoreUnavailable(f"the JobForge database cannot be reached: {type(exc).__name__}") from None

    async def schema_revision(self) -> str | None:
        """The Alembic revision the database is at (None = never migrated)."""
        async with self.engine.connect() as conn:
            exists = await conn.scalar(text("SELECT to_regclass('alembic_version') IS NOT NULL"))
            if not exists:
                return None
            revision = await conn.scalar(text("SELECT version_num FROM alembic_version"))
            return str(revision) if revision is not None else None

    # -- runs ---------------------------------------------------------------------------------

    async def record_queued(self, *, tenant_id: str, template_key: str, workflow_id: str, run_id: str,
                            trace_id: str, actor: str, idempotency_key: str | None, input_hash: str) -> None:
        """Record a run as ``queued`` when its id is handed out, so every read finds it at once.

        One statement; a run whose admission has recorded it already (an eager start, a repeated
        request) is left as it is.
        """
        async with fast.connection(self.engine) as conn:
            await conn.execute(
                "INSERT INTO runs (run_id, workflow_id, tenant_id, template_key, status, trace_id, actor, "
                "idempotency_key, input_hash, summary, error) VALUES (%(run_id)s, %(workflow_id)s, %(tenant_id)s, "
                "%(template_key)s, 'queued', %(trace_id)s, %(actor)s, %(idem)s, %(input_hash)s, '{}'::jsonb, '') "
                "ON CONFLICT (run_id) DO NOTHING",
                {"run_id": run_id, "workflow_id": workflow_id, "tenant_id": tenant_id, "template_key": template_key,
                 "trace_id": trace_id, "actor": actor, "idem": idempotency_key, "input_hash": input_hash})

    async def record_run(self, *, tenant_id: str, template_key: str, workflow_id: str, run_id: str,
                         status: RunStatus, trace_id: str, actor: str, idempotency_key: str | None,
                         input_hash: str, error: str = "") -> RunRecord:
        """Record admission's verdict: insert the run, or move its ``queued`` record on.

        Idempotent: a retried activity finds its own row (no longer queued) and leaves it as is.
        """
        params = {"run_id": run_id, "workflow_id": workflow_id, "tenant_id": tenant_id, "template_key": template_key,
                  "status": status.value, "trace_id": trace_id, "actor": actor, "idem": idempotency_key,
                  "input_hash": input_hash, "error": error, "final": status.is_final}
        # one round trip: the upsert's row, or (a decided record the upsert left alone) the record as the
        # statement found it; a record another admission committed while this statement waited on its lock
        # is not in the statement's snapshot, so that rare case reads it again
        async with fast.connection(self.engine) as conn:
            cur = conn.cursor(row_factory=dict_row)
            row = await (await cur.execute(
                "WITH up AS (INSERT INTO runs (run_id, workflow_id, tenant_id, template_key, status, trace_id, "
                "actor, idempotency_key, input_hash, summary, error, finished_at) VALUES (%(run_id)s, "
                "%(workflow_id)s, %(tenant_id)s, %(template_key)s, %(status)s, %(trace_id)s, %(actor)s, %(idem)s, "
                "%(input_hash)s, '{}'::jsonb, %(error)s, CASE WHEN %(final)s THEN now() END) ON CONFLICT (run_id) "
                "DO UPDATE SET status = EXCLUDED.status, idempotency_key = EXCLUDED.idempotency_key, "
                "input_hash = EXCLUDED.input_hash, error = EXCLUDED.error, finished_at = EXCLUDED.finished_at, "
                "updated_at = now() WHERE runs.status = 'queued' RETURNING *) "
                "SELECT * FROM up UNION ALL SELECT * FROM runs WHERE run_id = %(run_id)s "
                "AND NOT EXISTS (SELECT 1 FROM up)", params)).fetchone()
            if row is None:
                row = await (await cur.execute("SELECT * FROM runs WHERE run_id = %(run_id)s", params)).fetchone()
        assert row is not None
        return _record(row_of(row))

    async def finish_run(self, run_id: str, status: RunStatus, summary: Mapping[str, Any],
                         error: str = "") -> RunRecord:
        async with fast.connection(self.engine) as conn:  # one statement
            cur = conn.cursor(row_factory=dict_row)
            row = await (await cur.execute(
                "UPDATE runs SET status = %(status)s, summary = %(summary)s, error = %(error)s, updated_at = now(), "
                "finished_at = now() WHERE run_id = %(run_id)s RETURNING *",
                {"status": status.value, "summary": Jsonb(dict(summary)), "error": pg_text(error),
                 "run_id": run_id})).fetchone()
        if row is None:
            raise RunNotFound(run_id)
        return _record(row_of(row))

    async def queued_before(self, older_than_seconds: float, limit: int = 100) -> Sequence[RunRecord]:
        """Runs still ``queued`` that were handed out more than ``older_than_seconds`` ago, oldest first
        (a partial index holds only queued runs, so this stays cheap whatever the table's size)."""
        async with fast.connection(self.engine) as conn:
            cur = conn.cursor(row_factory=dict_row)
            rows = await (await cur.execute(
                "SELECT * FROM runs WHERE status = 'queued' AND created_at < now() - make_interval(secs => %(s)s) "
                "ORDER BY created_at LIMIT %(n)s", {"s": older_than_seconds, "n": limit})).fetchall()
        return [_record(row_of(row)) for row in rows]

    async def close_queued(self, run_id: str, status: RunStatus, error: str) -> RunRecord | None:
        """Give a run that is still ``queued`` its terminal ``status``; None when it is not queued (any more)."""
        async with fast.connection(self.engine) as conn:
            cur = conn.cursor(row_factory=dict_row)
            row = await (await cur.execute(
                "UPDATE runs SET status = %(status)s, error = %(error)s, updated_at = now(), finished_at = now() "
                "WHERE run_id = %(run_id)s AND status = 'queued' RETURNING *",
                {"status": status.value, "error": pg_text(error), "run_id": run_id})).fetchone()
        return _record(row_of(row)) if row else None

    async def get_run(self, ident: str, tenant_id: str | None = None) -> RunRecord:
        """A run by Temporal run id or workflow id (the latest run of that workflow id)."""
        if find_unstorable(ident) is not None:
            raise RunNotFound(ident)  # no stored id holds such text
        stmt = (select(RunRow).where(or_(RunRow.run_id == ident, RunRow.workflow_id == ident))
                .order_by(RunRow.created_at.desc()).limit(1))
        if tenant_id is not None:
            stmt = stmt.where(RunRow.tenant_id == tenant_id)
        async with self._auto() as session:
            row = (await session.execute(stmt)).scalar_one_or_none()
        if row is None:
            raise RunNotFound(ident)
        return _record(row)

    async def find_by_idempotency_key(self, tenant_id: str, key: str) -> RunRecord | None:
        async with fast.connection(self.engine) as conn:
            cur = conn.cursor(row_factory=dict_row)
            row = await (await cur.execute(
                "SELECT * FROM runs WHERE tenant_id = %(t)s AND idempotency_key = %(k)s ORDER BY created_at LIMIT 1",
                {"t": tenant_id, "k": key})).fetchone()
        return _record(row_of(row)) if row else None

    async def list_runs(self, tenant_id: str, *, template_key: str | None = None,
                        status: RunStatus | None = None, limit: int = 50,
                        before: datetime | None = None) -> Sequence[RunRecord]:
        stmt = select(RunRow).where(RunRow.tenant_id == tenant_id)
        if template_key:
            stmt = stmt.where(RunRow.template_key == template_key)
        if status:
            stmt = stmt.where(RunRow.status == status.value)
        if before:
            stmt = stmt.where(RunRow.created_at < before)
        stmt = stmt.order_by(RunRow.created_at.desc()).limit(limit)
        async with self._auto() as session:
            return [_record(row) for row in (await session.execute(stmt)).scalars()]

    async def page_runs(self, tenant_id: str, where: RunFilter | None = None, *, cursor: str | None = None,
                        limit: int = 50) -> Page[RunRecord]:
        """A page of the tenant's runs matching ``where``, newest first (keyset: ``cursor`` continues a page)."""
        where = where or RunFilter()
        limit = page_size(limit)
        params: dict[str, object] = {"tenant": tenant_id, "limit": limit + 1}
        clauses = ["tenant_id = %(tenant)s"]
        for name, clause in _PAGE_RUNS.items():
            value = getattr(where, name)
            if value is not None and value != "":
                clauses.append(clause)
                params[name] = value.value if isinstance(value, RunStatus) else value
        if cursor:
            params["c_at"], c_id = decode_cursor(cursor)
            params["c_id"] = str(c_id)
            clauses.append("(created_at, run_id) < (%(c_at)s, %(c_id)s)")
        sql = (f"SELECT * FROM runs WHERE {' AND '.join(clauses)} "  # the clauses are constants; values are bound
               "ORDER BY created_at DESC, run_id DESC LIMIT %(limit)s")
        async with fast.connection(self.engine) as conn:
            cur = conn.cursor(row_factory=dict_row)
            rows = await (await cur.execute(sql, params)).fetchall()
        records = [_record(row_of(row)) for row in rows[:limit]]
        more = len(rows) > limit
        return Page(records, encode_cursor(records[-1].created_at, records[-1].run_id) if more else None)

    async def run_counts(self, tenant_id: str, since: datetime, bucket_seconds: int = 60) -> Sequence[RunCount]:
        """How many of the tenant's runs created since ``since`` have each status, per time bucket."""
        async with fast.connection(self.engine) as conn:
            rows = await (await conn.execute(
                "SELECT date_bin(make_interval(secs => %(b)s), created_at, TIMESTAMPTZ '2000-01-01 00:00Z') AS bucket, "
                "status, count(*) FROM runs WHERE tenant_id = %(t)s AND created_at >= %(since)s "
                "GROUP BY 1, 2 ORDER BY 1, 2",
                {"t": tenant_id, "since": since, "b": bucket_seconds})).fetchall()
        return [RunCount(row[0], RunStatus(row[1]), int(row[2])) for row in rows]

    async def run_durations(self, tenant_id: str, since: datetime) -> Sequence[RunDurations]:
        """p50 and p95 of the durations of the tenant's runs finished since ``since``, per template."""
        async with fast.connection(self.engine) as conn:
            rows = await (await conn.execute(
                "SELECT template_key, count(*), "
                "percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - created_at)), "
                "percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - created_at)) "
                "FROM runs WHERE tenant_id = %(t)s AND created_at >= %(since)s AND finished_at IS NOT NULL "
                "AND status = ANY(%(final)s) GROUP BY template_key ORDER BY template_key",
                {"t": tenant_id, "since": since, "final": _FINAL})).fetchall()
        return [RunDurations(row[0], int(row[1]), float(row[2]), float(row[3])) for row in rows]

    # -- feature flag overrides ---------------------------------------------------------------

    async def flag_overrides(self) -> dict[Flag, bool]:
        """Overrides by flag; a flag retired by newer code is ignored rather than failing every admission."""
        async with fast.connection(self.engine) as conn:
            return await direct.flag_overrides(conn)

    async def flag_override_rows(self) -> dict[str, dict[str, Any]]:
        """Every stored override by flag name: value, who set it, why and when."""
        async with self._auto() as session:
            rows = (await session.execute(select(FlagOverrideRow))).scalars().all()
        return {row.name: {"enabled": row.enabled, "actor": row.actor, "reason": row.reason,
                           "updated_at": row.updated_at} for row in rows}

    async def set_flag_override(self, flag: Flag, enabled: bool, actor: str = "", reason: str = "") -> None:
        stmt = insert(FlagOverrideRow).values(name=flag.value, enabled=enabled, actor=actor, reason=reason)
        stmt = stmt.on_conflict_do_update(
            index_elements=[FlagOverrideRow.name],
            set_={"enabled": enabled, "actor": actor, "reason": reason, "updated_at": func.now()},
        )
        async with self._session.begin() as session:
            await session.execute(stmt)

    async def delete_flag_override(self, flag: Flag) -> bool:
        async with self._session.begin() as session:
            result = await session.execute(delete(FlagOverrideRow).where(FlagOverrideRow.name == flag.value))
        return bool(getattr(result, "rowcount", 0))

    # -- artifacts ------------------------------------------------------------------------------

    async def record_artifact(self, *, tenant_id: str, run_id: str, name: str, kind: str, media_type: str,
                              sha256: str, size: int, path: str) -> ArtifactRecord:
        """Record (or, for a retried step, replace) the artifact ``name`` of a run."""
        values = {"kind": kind, "media_type": media_type, "sha256": sha256, "size": size, "path": path}
        stmt = (
            insert(ArtifactRow)
            .values(tenant_id=tenant_id, run_id=run_id, name=name, **values)
            .on_conflict_do_update(constraint="uq_artifacts_run_name", set_={**values, "created_at": func.now()})
            .returning(ArtifactRow)
        )
        async with self._session.begin() as session:
            row = (await session.execute(stmt)).scalar_one()
            return _artifact(row)

    async def list_artifacts(self, tenant_id: str, run_id: str) -> Sequence[ArtifactRecord]:
        stmt = (select(ArtifactRow).where(ArtifactRow.tenant_id == tenant_id, ArtifactRow.run_id == run_id)
                .order_by(ArtifactRow.name))
        async with self._auto() as session:
            return [_artifact(row) for row in (await session.execute(stmt)).scalars()]

    # -- verify-pack cache ----------------------------------------------------------------------

    async def get_verify_cache(self, tenant_id: str, fingerprint: str) -> VerifyCacheEntry | None:
        async with self._auto() as session:
            row = await session.get(VerifyCacheRow, (tenant_id, fingerprint))
        return _cache_entry(row) if row is not None else None

    async def put_verify_cache(self, *, tenant_id: str, fingerprint: str, verdict: str, report: Mapping[str, Any],
                               run_id: str) -> VerifyCacheEntry:
        values = {"verdict": verdict, "report": dict(report), "run_id": run_id}
        stmt = (
            insert(VerifyCacheRow)
            .values(tenant_id=tenant_id, fingerprint=fingerprint, **values)
            .on_conflict_do_update(index_elements=[VerifyCacheRow.tenant_id, VerifyCacheRow.fingerprint],
                                   set_={**values, "created_at": func.now()})
            .returning(VerifyCacheRow)
        )
        async with self._session.begin() as session:
            return _cache_entry((await session.execute(stmt)).scalar_one())


def _artifact(row: ArtifactRow) -> ArtifactRecord:
    return ArtifactRecord(id=row.id, tenant_id=row.tenant_id, run_id=row.run_id, name=row.name, kind=row.kind,
                          media_type=row.media_type, sha256=row.sha256, size=row.size, path=row.path,
                          created_at=row.created_at)


def _cache_entry(row: VerifyCacheRow) -> VerifyCacheEntry:
    return VerifyCacheEntry(tenant_id=row.tenant_id, fingerprint=row.fingerprint, verdict=row.verdict,
                            report=row.report or {}, run_id=row.run_id, created_at=row.created_at)
