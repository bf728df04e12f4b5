"""The narrow, typed interface to JobForge's PostgreSQL store: :class:`Store`, the one façade.

Rows become frozen models at this boundary; callers never see SQLAlchemy objects or rows. Statements are
the named ones of :mod:`shared.store.statements`; text written into a column goes through
:func:`shared.store.columns.fit` here, not in callers.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

import orjson
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb, set_json_dumps

from jobforge.errors import RunNotFound, StoreUnavailable
from jobforge.models import ArtifactRecord, RunRecord, RunStatus
from shared.flags import Flag
from shared.security.limits import find_unstorable, storable
from shared.store import direct, fast
from shared.store import statements as sql
from shared.store.columns import fit
from shared.store.paging import Page, decode_cursor, encode_cursor, page_size
from shared.store.rows import RunFilter, run_record
from shared.verify.models import VerifyCacheEntry

if TYPE_CHECKING:
    from shared.store.audit import AuditLog
    from shared.store.dedupe import EventDeduper
    from shared.store.grants import GrantStore
    from shared.store.ratelimits import RateLimiter
    from shared.store.replay import ReplayStore
    from shared.store.sessions import ConsoleSessions
    from shared.store.tenants import TenantStore
    from shared.store.triggers import TriggerStore

__all__ = ["RunCount", "RunDurations", "RunFilter", "Store", "unreachable"]


def storable_json(value: Any) -> str:
    """JSON text for a ``json``/``jsonb`` parameter, with text PostgreSQL cannot hold replaced."""
    value = storable(value)
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # integers beyond 64 bits, objects orjson does not know: the stdlib's rules
        return json.dumps(value, default=str)


def unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database could not be reached or the connection broke (retry later)."""
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError | ConnectionError):
        return True
    if type(exc).__module__.startswith("sqlalchemy"):  # Alembic's migrations run on SQLAlchemy
        from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

        return isinstance(exc, OperationalError | InterfaceError) or (
            isinstance(exc, DBAPIError) and exc.connection_invalidated)
    return False


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


_FINAL = [status.value for status in RunStatus if status.is_final and status is not RunStatus.REJECTED]


class Store:
    """JobForge's persistent state. One instance per process, shared by its activities.

    Every statement is a named one of :mod:`shared.store.statements`, run over :meth:`connection`; the
    stores of the other areas (tenants, the gate's state, triggers and events, the audit chain, console
    sessions, the replay pack) are this store's attributes, built on first use and shared by everything
    in the process (:attr:`tenants`, :attr:`triggers`, ...): nothing builds one of its own.
    """

    def __init__(self, url: str, pool_size: int = 5) -> None:
        """The store of the database at ``url`` (a SQLAlchemy-style ``postgresql+psycopg://`` URL or a libpq
        one), keeping up to ``pool_size`` connections open per event loop (``shared.store.fast``)."""
        # JSON values are written storable: text the gate did not refuse (a step's output in a summary)
        # has NUL and unpaired surrogates replaced, so PostgreSQL never rejects them (and never quotes
        # them into its own log doing so)
        set_json_dumps(storable_json)
        self.url = url
        self.pool = fast.FastPool(direct.conninfo(url), pool_size)

    @classmethod
    def from_url(cls, url: str, pool_size: int = 5) -> Store:
        return cls(url, pool_size)

    @classmethod
    @asynccontextmanager
    async def opened(cls, url: str, pool_size: int = 5) -> AsyncIterator[Store]:
        """The store of a process on ``url``, closed when the block ends (``open_runtime`` and the commands
        that need only the store open it this way)."""
        store = cls.from_url(url, pool_size)
        try:
            yield store
        finally:
            await store.close()

    async def close(self) -> None:
        """Close the pooled connections (those in use close when returned); a later statement opens anew."""
        closing, self.pool = self.pool, fast.FastPool(self.pool.conninfo, self.pool.size, self.pool.overflow)
        closing.close()

    def connection(self) -> AbstractAsyncContextManager[fast.Conn]:
        """An autocommit psycopg connection to the store's database for as long as the block runs
        (``conn.transaction()`` for steps whose statements must hold together)."""
        return self.pool.connection()

    # -- the stores of each area (one per process) ------------------------------------------------

    @cached_property
    def tenants(self) -> TenantStore:
        from shared.store.tenants import TenantStore

        return TenantStore(self)

    @cached_property
    def triggers(self) -> TriggerStore:
        """Triggers, their fires and stored events."""
        from shared.store.triggers import TriggerStore

        return TriggerStore(self)

    @cached_property
    def audit(self) -> AuditLog:
        from shared.store.audit import AuditLog

        return AuditLog(self)

    @cached_property
    def deduper(self) -> EventDeduper:
        from shared.store.dedupe import EventDeduper

        return EventDeduper(self)

    @cached_property
    def limiter(self) -> RateLimiter:
        from shared.store.ratelimits import RateLimiter

        return RateLimiter(self)

    @cached_property
    def grants(self) -> GrantStore:
        from shared.store.grants import GrantStore

        return GrantStore(self)

    @cached_property
    def sessions(self) -> ConsoleSessions:
        from shared.store.sessions import ConsoleSessions

        return ConsoleSessions(self)

    @cached_property
    def replay(self) -> ReplayStore:
        from shared.store.replay import ReplayStore

        return ReplayStore(self)

    # -- schema -------------------------------------------------------------------------------

    async def ping(self) -> None:
        try:
            async with self.connection() as conn:
                await conn.execute(sql.PING)
        except (psycopg.Error, OSError) as exc:
            raise StoreUnavailable(f"the JobForge database cannot be reached: {type(exc).__name__}") from None

    async def schema_revision(self) -> str | None:
        """The Alembic revision the database is at (None = never migrated)."""
        async with self.connection() as conn:
            migrated = await (await conn.execute(sql.SCHEMA_MIGRATED)).fetchone()
            if migrated is None or not migrated[0]:
                return None
            row = await (await conn.execute(sql.SCHEMA_REVISION)).fetchone()
        return str(row[0]) if row is not None and row[0] is not None else None

    # -- runs ---------------------------------------------------------------------------------

    async def record_queued(self, *, tenant_id: str, template_key: str, workflow_id: str, run_id: str,
                            trace_id: str, actor: str, idempotency_key: str | None, input_hash: str) -> None:
        """Record a run as ``queued`` when its id is handed out, so every read finds it at once.

        One statement; a run whose admission has recorded it already (an eager start, a repeated
        request) is left as it is.
        """
        params = fit("runs", {"run_id": run_id, "workflow_id": workflow_id, "tenant_id": tenant_id,
                              "template_key": template_key, "trace_id": trace_id, "actor": actor,
                              "idempotency_key": idempotency_key, "input_hash": input_hash})
        async with self.connection() as conn:
            await conn.execute(sql.RUN_RECORD_QUEUED, {**params, "idem": params["idempotency_key"]})

    async def record_run(self, *, tenant_id: str, template_key: str, workflow_id: str, run_id: str,
                         status: RunStatus, trace_id: str, actor: str, idempotency_key: str | None,
                         input_hash: str, error: str = "") -> RunRecord:
        """Record admission's verdict: insert the run, or move its ``queued`` record on.

        Idempotent: a retried activity finds its own row (no longer queued) and leaves it as is.
        """
        params = fit("runs", {"run_id": run_id, "workflow_id": workflow_id, "tenant_id": tenant_id,
                              "template_key": template_key, "status": status.value, "trace_id": trace_id,
                              "actor": actor, "idempotency_key": idempotency_key, "input_hash": input_hash,
                              "error": error})
        params.update(idem=params["idempotency_key"], final=status.is_final)
        # one round trip: the upsert's row, or (a decided record the upsert left alone) the record as the
        # statement found it; a record another admission committed while this statement waited on its lock
        # is not in the statement's snapshot, so that rare case reads it again
        async with self.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            row = await (await cur.execute(sql.RUN_RECORD_VERDICT, params)).fetchone()
            if row is None:
                row = await (await cur.execute(sql.RUN_BY_ID, params)).fetchone()
        assert row is not None
        return run_record(row)

    async def record_admitted_with_receipt(self, *, tenant_id: str, template_key: str, workflow_id: str,
                                           run_id: str, trace_id: str, actor: str, idempotency_key: str | None,
                                           input_hash: str, receipt_jti: str,
                                           receipt_expires_at: datetime) -> RunRecord | None:
        """Record a run admitted on its receipt as ``running`` (as :meth:`record_run`) and the receipt's use
        (``receipt_uses``, single use) in one statement; None, and no run written, when another run used
        the receipt first."""
        params = fit("runs", {"run_id": run_id, "workflow_id": workflow_id, "tenant_id": tenant_id,
                              "template_key": template_key, "trace_id": trace_id, "actor": actor,
                              "idempotency_key": idempotency_key, "input_hash": input_hash})
        use = fit("receipt_uses", {"jti": receipt_jti, "workflow_id": workflow_id, "run_id": run_id})
        params.update(idem=params["idempotency_key"], jti=use["jti"], exp=receipt_expires_at)
        async with self.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            row = await (await cur.execute(sql.RUN_RECORD_ADMITTED_WITH_RECEIPT, params)).fetchone()
            assert row is not None, "the receipt's use returns its holder"
            if row.pop("receipt_run_id") != params["run_id"]:
                return None
            if row["run_id"] is None:
                row = await (await cur.execute(sql.RUN_BY_ID, params)).fetchone()
        assert row is not None
        return run_record(row)

    async def finish_run(self, run_id: str, status: RunStatus, summary: Mapping[str, Any],
                         error: str = "") -> RunRecord:
        params = fit("runs", {"status": status.value, "error": error, "run_id": run_id})
        async with self.connection() as conn:  # one statement
            cur = conn.cursor(row_factory=dict_row)
            row = await (await cur.execute(sql.RUN_FINISH, {**params, "summary": Jsonb(dict(summary))})).fetchone()
        if row is None:
            raise RunNotFound(run_id)
        return run_record(row)

    async def queued_before(self, older_than_seconds: float, limit: int = 100) -> Sequence[RunRecord]:
        """Runs still ``queued`` that were handed out more than ``older_than_seconds`` ago, oldest first
        (a partial index holds only queued runs, so this stays cheap whatever the table's size)."""
        async with self.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            rows = await (await cur.execute(sql.RUNS_QUEUED_BEFORE, {"s": older_than_seconds, "n": limit})).fetchall()
        return [run_record(row) for row in rows]

    async def close_queued(self, run_id: str, status: RunStatus, error: str) -> RunRecord | None:
        """Give a run that is still ``queued`` its terminal ``status``; None when it is not queued (any more)."""
        params = fit("runs", {"status": status.value, "error": error, "run_id": run_id})
        async with self.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            row = await (await cur.execute(sql.RUN_CLOSE_QUEUED, params)).fetchone()
        return run_record(row) if row else None

    async def get_run(self, ident: str, tenant_id: str | None = None) -> RunRecord:
        """A run by Temporal run id or workflow id (the latest run of that workflow id)."""
        if find_unstorable(ident) is not None:
            raise RunNotFound(ident)  # no stored id holds such text
        async with self.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            if tenant_id is None:
                row = await (await cur.execute(sql.RUN_BY_IDENT, {"ident": ident})).fetchone()
            else:
                row = await (await cur.execute(sql.RUN_OF_TENANT_BY_IDENT,
                                               {"ident": ident, "tenant": tenant_id})).fetchone()
        if row is None:
            raise RunNotFound(ident)
        return run_record(row)

    async def find_by_idempotency_key(self, tenant_id: str, key: str) -> RunRecord | None:
        async with self.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            row = await (await cur.execute(sql.RUN_BY_IDEMPOTENCY_KEY, {"t": tenant_id, "k": key})).fetchone()
        return run_record(row) if row else None

    async def list_runs(self, tenant_id: str, *, template_key: str | None = None,
                        status: RunStatus | None = None, limit: int = 50,
                        before: datetime | None = None) -> Sequence[RunRecord]:
        """The tenant's ``limit`` newest runs (of one template, one status, created before ``before``)."""
        async with self.connection() as conn:
            return await direct.runs(conn, tenant_id, RunFilter(template_key=template_key, status=status,
                                                                until=before), limit)

    async def page_runs(self, tenant_id: str, where: RunFilter | None = None, *, cursor: str | None = None,
                        limit: int = 50) -> Page[RunRecord]:
        """A page of the tenant's runs matching ``where``, newest first (keyset: ``cursor`` continues a page)."""
        limit = page_size(limit)
        after: tuple[datetime, str] | None = None
        if cursor:
            c_at, c_id = decode_cursor(cursor)
            after = (c_at, str(c_id))
        async with self.connection() as conn:
            rows = await direct.runs(conn, tenant_id, where or RunFilter(), limit + 1, after=after)
        records = rows[:limit]
        more = len(rows) > limit
        return Page(records, encode_cursor(records[-1].created_at, records[-1].run_id) if more else None)

    async def run_counts(self, tenant_id: str, since: datetime, bucket_seconds: int = 60) -> Sequence[RunCount]:
        """How many of the tenant's runs created since ``since`` have each status, per time bucket."""
        async with self.connection() as conn:
            rows = await (await conn.execute(sql.RUN_COUNTS, {"t": tenant_id, "since": since,
                                                              "b": bucket_seconds})).fetchall()
        return [RunCount(row[0], RunStatus(row[1]), int(row[2])) for row in rows]

    async def run_durations(self, tenant_id: str, since: datetime) -> Sequence[RunDurations]:
        """p50 and p95 of the durations of the tenant's runs finished since ``since``, per template."""
        async with self.connection() as conn:
            rows = await (await conn.execute(sql.RUN_DURATIONS, {"t": tenant_id, "since": since,
                                                                 "final": _FINAL})).fetchall()
        return [RunDurations(row[0], int(row[1]), float(row[2]), float(row[3])) for row in rows]

    # -- feature flag overrides ---------------------------------------------------------------

    async def flag_overrides(self) -> dict[Flag, bool]:
        """Overrides by flag; a flag retired by newer code is ignored rather than failing every admission."""
        async with self.connection() as conn:
            return await direct.flag_overrides(conn)

    async def flag_override_rows(self) -> dict[str, dict[str, Any]]:
        """Every stored override by flag name: value, who set it, why and when."""
        async with self.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            rows = await (await cur.execute(sql.FLAG_OVERRIDE_ROWS)).fetchall()
        return {row["name"]: {"enabled": row["enabled"], "actor": row["actor"], "reason": row["reason"],
                              "updated_at": row["updated_at"]} for row in rows}

    async def set_flag_override(self, flag: Flag, enabled: bool, actor: str = "", reason: str = "") -> None:
        params = fit("flag_overrides", {"name": flag.value, "enabled": enabled, "actor": actor, "reason": reason})
        async with self.connection() as conn:
            await conn.execute(sql.FLAG_OVERRIDE_SET, params)

    async def delete_flag_override(self, flag: Flag) -> bool:
        async with self.connection() as conn:
            cur = await conn.execute(sql.FLAG_OVERRIDE_DELETE, {"name": flag.value})
        return bool(cur.rowcount)

    # -- artifacts ------------------------------------------------------------------------------

    async def record_artifact(self, *, tenant_id: str, run_id: str, name: str, kind: str, media_type: str,
                              sha256: str, size: int, path: str) -> ArtifactRecord:
        """Record (or, for a retried step, replace) the artifact ``name`` of a run."""
        params = fit("artifacts", {"tenant_id": tenant_id, "run_id": run_id, "name": name, "kind": kind,
                                   "media_type": media_type, "sha256": sha256, "size": size, "path": path})
        async with self.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            row = await (await cur.execute(sql.ARTIFACT_PUT, params)).fetchone()
        assert row is not None
        return _artifact(row)

    async def list_artifacts(self, tenant_id: str, run_id: str) -> Sequence[ArtifactRecord]:
        async with self.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            rows = await (await cur.execute(sql.ARTIFACTS_OF_RUN,
                                            {"tenant_id": tenant_id, "run_id": run_id})).fetchall()
        return [_artifact(row) for row in rows]

    # -- verify-pack cache ----------------------------------------------------------------------

    async def get_verify_cache(self, tenant_id: str, fingerprint: str) -> VerifyCacheEntry | None:
        async with self.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            row = await (await cur.execute(sql.VERIFY_CACHE_GET,
                                           {"tenant_id": tenant_id, "fingerprint": fingerprint})).fetchone()
        return _cache_entry(row) if row is not None else None

    async def put_verify_cache(self, *, tenant_id: str, fingerprint: str, verdict: str, report: Mapping[str, Any],
                               run_id: str) -> VerifyCacheEntry:
        params = fit("verify_cache", {"tenant_id": tenant_id, "fingerprint": fingerprint, "verdict": verdict,
                                      "run_id": run_id})
        async with self.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            row = await (await cur.execute(sql.VERIFY_CACHE_PUT, {**params, "report": Jsonb(dict(report))})).fetchone()
        assert row is not None
        return _cache_entry(row)


def _artifact(row: Mapping[str, Any]) -> ArtifactRecord:
    return ArtifactRecord(id=row["id"], tenant_id=row["tenant_id"], run_id=row["run_id"], name=row["name"],
                          kind=row["kind"], media_type=row["media_type"], sha256=row["sha256"], size=row["size"],
                          path=row["path"], created_at=row["created_at"])


def _cache_entry(row: Mapping[str, Any]) -> VerifyCacheEntry:
    return VerifyCacheEntry(tenant_id=row["tenant_id"], fingerprint=row["fingerprint"], verdict=row["verdict"],
                            report=row["report"] or {}, run_id=row["run_id"], created_at=row["created_at"])
