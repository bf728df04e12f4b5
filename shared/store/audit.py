"""The audit log: per-tenant hash chains, gap-free under concurrent writers.

Writers of one tenant take turns on a transaction-scoped advisory lock, taken in its own statement;
only then do they read the chain's head (under READ COMMITTED a statement that both locked and read
could miss the previous writer's row). Entry bytes are stored as ``bytea``.

Within one process, appends to the same tenant's chain are *group-committed*: while one transaction
holds the tenant's lock, the entries that arrive queue up, and the next transaction seals and writes
all of them (up to :data:`MAX_BATCH`) under one lock, one head read and one head update. Each
:meth:`AuditLog.append` still returns only after its own entry is committed, so a caller never acts
on an unrecorded decision; under load the lock is taken once per batch instead of once per entry,
which is what lets one tenant's chain keep up with many concurrent requests.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from psycopg.rows import dict_row
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.security.audit import GENESIS, AuditFact, ChainVerdict, StoredEntry, seal, verify_chain
from shared.store import fast
from shared.store.tables import AuditEntryRow, AuditHeadRow


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True, slots=True)
class AuditRecord:
    tenant_id: str
    seq: int
    occurred_at: datetime
    actor: str
    action: str
    resource: str
    decision: str
    reason: str
    trace_id: str
    details: dict[str, Any]
    hash: str
    prev_hash: str

    def to_json(self) -> dict[str, Any]:
        return {"tenant_id": self.tenant_id, "seq": self.seq, "occurred_at": iso(self.occurred_at),
                "actor": self.actor, "action": self.action, "resource": self.resource, "decision": self.decision,
                "reason": self.reason, "trace_id": self.trace_id, "details": self.details, "hash": self.hash,
                "prev_hash": self.prev_hash}


def _record(row: AuditEntryRow) -> AuditRecord:
    try:
        details = orjson.loads(row.body).get("details", {})
    except (orjson.JSONDecodeError, AttributeError):
        details = {}
    return AuditRecord(row.tenant_id, row.seq, row.occurred_at, row.actor, row.action, row.resource, row.decision,
                       row.reason, row.trace_id, details if isinstance(details, dict) else {}, row.hash,
                       row.prev_hash)


#: the most entries one transaction seals (a burst larger than this takes several turns)
MAX_BATCH = 256

_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('jobforge.audit:' || %(t)s, 0))"
_HEAD = ("SELECT clock_timestamp() AS now, h.seq, h.hash FROM (SELECT 1) AS one "
         "LEFT JOIN audit_heads AS h ON h.tenant_id = %(t)s")
_INSERT = (
    "INSERT INTO audit_log (tenant_id, seq, prev_hash, hash, body, occurred_at, actor, action, resource, "
    "decision, reason, trace_id) VALUES (%(t)s, %(seq)s, %(prev)s, %(hash)s, %(body)s, %(at)s, %(actor)s, "
    "%(action)s, %(resource)s, %(decision)s, %(reason)s, %(trace)s)")
_SET_HEAD = (
    "INSERT INTO audit_heads (tenant_id, seq, hash) VALUES (%(t)s, %(seq)s, %(hash)s) "
    "ON CONFLICT (tenant_id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, "
    "updated_at = clock_timestamp()")

_Waiting = list[tuple[AuditFact, "asyncio.Future[AuditRecord]"]]


class _Batcher:
    """One event loop's queues of entries waiting for their tenant's next transaction."""

    def __init__(self) -> None:
        self.waiting: dict[str, _Waiting] = {}
        self.writers: dict[str, asyncio.Task[None]] = {}


class AuditLog:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._batchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Batcher] = weakref.WeakKeyDictionary()

    async def append(self, fact: AuditFact) -> AuditRecord:
        """Seal ``fact`` as the next entry of its tenant's chain; returns once it is committed."""
        loop = asyncio.get_running_loop()
        batcher = self._batchers.get(loop)
        if batcher is None:
            batcher = self._batchers[loop] = _Batcher()
        done: asyncio.Future[AuditRecord] = loop.create_future()
        batcher.waiting.setdefault(fact.tenant_id, []).append((fact, done))
        writer = batcher.writers.get(fact.tenant_id)
        if writer is None or writer.done():
            batcher.writers[fact.tenant_id] = loop.create_task(self._drain(batcher, fact.tenant_id))
        # shielded: a caller that gives up does not take its entry (or its batch) down with it
        return await asyncio.shield(done)

    async def _drain(self, batcher: _Batcher, tenant_id: str) -> None:
        """Write the tenant's waiting entries, batch after batch, until none are left."""
        while True:
            queue = batcher.waiting.get(tenant_id)
            if not queue:
                batcher.waiting.pop(tenant_id, None)
                return
            batch, batcher.waiting[tenant_id] = queue[:MAX_BATCH], queue[MAX_BATCH:]
            try:
                records = await self._write(tenant_id, [fact for fact, _ in batch])
            except BaseException as exc:  # every waiter of the batch learns of the failure
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc if isinstance(exc, Exception) else RuntimeError(repr(exc)))
                if not isinstance(exc, Exception):
                    raise
                continue
            for (_, done), record in zip(batch, records, strict=True):
                if not done.done():
                    done.set_result(record)

    async def _write(self, tenant_id: str, facts: Sequence[AuditFact]) -> list[AuditRecord]:
        """Seal ``facts`` as the next entries of the chain in one transaction under the tenant's lock."""
        async with fast.connection(self.engine) as conn, conn.transaction():
            await conn.execute(_LOCK, {"t": tenant_id})
            head = await (await conn.cursor(row_factory=dict_row).execute(_HEAD, {"t": tenant_id})).fetchone()
            assert head is not None
            seq, prev = (head["seq"], head["hash"]) if head["seq"] is not None else (0, GENESIS)
            occurred = head["now"]
            at = iso(occurred)
            rows: list[dict[str, Any]] = []
            records: list[AuditRecord] = []
            for fact in facts:
                seq += 1
                body, digest = seal(fact, seq=seq, prev_hash=prev, occurred_at=at)
                rows.append({"t": tenant_id, "seq": seq, "prev": prev, "hash": digest, "body": body, "at": occurred,
                             "actor": fact.actor, "action": fact.action, "resource": fact.resource,
                             "decision": fact.decision.value, "reason": fact.reason, "trace": fact.trace_id})
                records.append(AuditRecord(tenant_id, seq, occurred, fact.actor, fact.action, fact.resource,
                                           fact.decision.value, fact.reason, fact.trace_id, dict(fact.details),
                                           digest, prev))
                prev = digest
            async with conn.cursor() as cur:
                await cur.executemany(_INSERT, rows)
            await conn.execute(_SET_HEAD, {"t": tenant_id, "seq": seq, "hash": prev})
        return records

    async def list(self, tenant_id: str, *, limit: int = 100, before_seq: int | None = None) -> Sequence[AuditRecord]:
        """A tenant's entries, newest first."""
        stmt = select(AuditEntryRow).where(AuditEntryRow.tenant_id == tenant_id)
        if before_seq is not None:
            stmt = stmt.where(AuditEntryRow.seq < before_seq)
        stmt = stmt.order_by(AuditEntryRow.seq.desc()).limit(limit)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return [_record(AuditEntryRow(**row._mapping)) for row in rows]

    async def verify(self, tenant_id: str) -> ChainVerdict:
        """Re-check a tenant's whole chain from one consistent snapshot (rows streamed, a few thousand at a time)."""
        async with fast.connection(self.engine) as conn, conn.transaction():
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            head = await (await conn.execute("SELECT seq, hash FROM audit_heads WHERE tenant_id = %s",
                                             (tenant_id,))).fetchone()
            async with conn.cursor(name="jobforge_audit_verify") as cur:
                cur.itersize = 2000
                await cur.execute(
                    "SELECT seq, hash, body, tenant_id, prev_hash, occurred_at, actor, action, resource, decision, "
                    "reason, trace_id FROM audit_log WHERE tenant_id = %s ORDER BY seq", (tenant_id,))
                rows = [row async for row in cur]
        # entries are made one at a time as the check walks the rows: few live objects, little GC
        entries = (StoredEntry(seq=seq, hash=digest, body=bytes(body), columns={
            "tenant_id": tenant, "seq": seq, "prev_hash": prev, "occurred_at": iso(occurred), "actor": actor,
            "action": action, "resource": resource, "decision": decision, "reason": reason, "trace_id": trace})
            for (seq, digest, body, tenant, prev, occurred, actor, action, resource, decision, reason, trace) in rows)
        return verify_chain(tenant_id, entries, (head[0], head[1]) if head else None)

    async def tenants(self) -> Sequence[str]:
        async with self.engine.connect() as conn:
            return list((await conn.execute(select(AuditHeadRow.tenant_id).order_by(AuditHeadRow.tenant_id))).scalars())
