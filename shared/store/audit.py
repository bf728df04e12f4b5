"""The audit log: per-tenant hash chains, gap-free under concurrent writers.

Writers of one tenant take turns on the tenant's ``audit_heads`` row: a transaction claims it with an
upsert (``ON CONFLICT DO UPDATE`` waits for the writer holding the row, then locks and returns the head
that writer committed), seals its entries after that head, and appends them and moves the head in one
more statement: four statements with BEGIN and COMMIT, however many entries, sent in two network round
trips (psycopg's pipeline mode: BEGIN with the claim, the append with COMMIT). Entry bytes are stored as
``bytea``.

Within one process, appends to the same tenant's chain are *group-committed*: while one transaction
holds the tenant's lock, the entries that arrive queue up, and the next transaction seals and writes
all of them (up to :data:`MAX_BATCH`) under one head claim and one append. Each
:meth:`AuditLog.append` still returns only after its own entry is committed, so a caller never acts
on an unrecorded decision; under load the lock is taken once per batch instead of once per entry,
which is what lets one tenant's chain keep up with many concurrent requests.
"""

from __future__ import annotations

import asyncio
import dataclasses
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from psycopg.rows import dict_row

from shared.security.audit import GENESIS, AuditFact, ChainVerdict, StoredEntry, seal, verify_chain
from shared.store import statements as sql
from shared.store.columns import fit

if TYPE_CHECKING:
    from shared.store.store import Store


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


def _record(row: dict[str, Any]) -> AuditRecord:
    try:
        details = orjson.loads(row["body"]).get("details", {})
    except (orjson.JSONDecodeError, AttributeError):
        details = {}
    return AuditRecord(row["tenant_id"], row["seq"], row["occurred_at"], row["actor"], row["action"], row["resource"],
                       row["decision"], row["reason"], row["trace_id"], details if isinstance(details, dict) else {},
                       row["hash"], row["prev_hash"])


#: the most entries one transaction seals (a burst larger than this takes several turns)
MAX_BATCH = 256


def _fitted(fact: AuditFact) -> AuditFact:
    """``fact`` with its free-text fields as the ``audit_log`` row stores them."""
    row = fit("audit_log", {"tenant_id": fact.tenant_id, "actor": fact.actor, "action": fact.action,
                            "resource": fact.resource, "reason": fact.reason, "trace_id": fact.trace_id})
    return dataclasses.replace(fact, **row)


_Waiting = list[tuple[AuditFact, "asyncio.Future[AuditRecord]"]]


class _Batcher:
    """One event loop's queues of entries waiting for their tenant's next transaction."""

    def __init__(self) -> None:
        self.waiting: dict[str, _Waiting] = {}
        self.writers: dict[str, asyncio.Task[None]] = {}


class AuditLog:
    """The tenants' audit chains (:attr:`shared.store.Store.audit`: one per process, so its appends batch)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._batchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Batcher] = weakref.WeakKeyDictionary()

    async def append(self, fact: AuditFact) -> AuditRecord:
        """Seal ``fact`` as the next entry of its tenant's chain; returns once it is committed.

        Its free-text fields are clipped to their columns first (``audit_log``: actor, resource, trace id,
        and the reason to 2,000 characters), so the sealed bytes hold what the row holds.
        """
        fact = _fitted(fact)
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
        """Seal ``facts`` as the next entries of the chain in one transaction holding the tenant's head row.

        Two statements: claim the head (row lock, current head, database clock), then append every entry
        and move the head in one statement. In pipeline mode, BEGIN goes with the claim and COMMIT with the
        append: two network round trips.
        """
        # BEGIN and COMMIT are statements of the pipeline (psycopg's transaction() would sync on each); a
        # step that fails leaves its connection in the failed transaction, which the pool closes
        async with self._store.connection() as conn, conn.pipeline():
            cur = conn.cursor(row_factory=dict_row)
            await conn.execute(sql.TX_BEGIN)
            await cur.execute(sql.AUDIT_CLAIM_HEAD, {"t": tenant_id, "genesis": GENESIS})
            head = await cur.fetchone()  # sends BEGIN and the claim together, waits for the head
            assert head is not None
            seq, prev = head["seq"], head["hash"]
            occurred = head["now"]
            at = iso(occurred)
            columns: dict[str, list[Any]] = {name: [] for name in (
                "seq", "prev", "hash", "body", "actor", "action", "resource", "decision", "reason", "trace")}
            records: list[AuditRecord] = []
            for fact in facts:
                seq += 1
                body, digest = seal(fact, seq=seq, prev_hash=prev, occurred_at=at)
                for name, value in (("seq", seq), ("prev", prev), ("hash", digest), ("body", body),
                                    ("actor", fact.actor), ("action", fact.action), ("resource", fact.resource),
                                    ("decision", fact.decision.value), ("reason", fact.reason),
                                    ("trace", fact.trace_id)):
                    columns[name].append(value)
                records.append(AuditRecord(tenant_id, seq, occurred, fact.actor, fact.action, fact.resource,
                                           fact.decision.value, fact.reason, fact.trace_id, dict(fact.details),
                                           digest, prev))
                prev = digest
            await conn.execute(sql.AUDIT_APPEND, {"t": tenant_id, "at": occurred, "head_seq": seq, "head_hash": prev,
                                                  **columns})
            await conn.execute(sql.TX_COMMIT)  # sent with the append when the pipeline ends
        return records

    async def list(self, tenant_id: str, *, limit: int = 100, before_seq: int | None = None) -> Sequence[AuditRecord]:
        """A tenant's entries, newest first."""
        params = {"t": tenant_id, "before": before_seq, "limit": limit}
        async with self._store.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            rows = await (await cur.execute(sql.AUDIT_NEWEST if before_seq is None else sql.AUDIT_NEWEST_BEFORE,
                                            params)).fetchall()
        return [_record(row) for row in rows]

    async def verify(self, tenant_id: str) -> ChainVerdict:
        """Re-check a tenant's whole chain from one consistent snapshot (rows streamed, a few thousand at a time)."""
        async with self._store.connection() as conn, conn.transaction():
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            head = await (await conn.execute(sql.AUDIT_HEAD_OF, (tenant_id,))).fetchone()
            async with conn.cursor(name="jobforge_audit_verify") as cur:
                cur.itersize = 2000
                await cur.execute(sql.AUDIT_CHAIN, (tenant_id,))
                rows = [row async for row in cur]
        # entries are made one at a time as the check walks the rows: few live objects, little GC
        entries = (StoredEntry(seq=seq, hash=digest, body=bytes(body), columns={
            "tenant_id": tenant, "seq": seq, "prev_hash": prev, "occurred_at": iso(occurred), "actor": actor,
            "action": action, "resource": resource, "decision": decision, "reason": reason, "trace_id": trace})
            for (seq, digest, body, tenant, prev, occurred, actor, action, resource, decision, reason, trace) in rows)
        return verify_chain(tenant_id, entries, (head[0], head[1]) if head else None)

    async def tenants(self) -> Sequence[str]:
        async with self._store.connection() as conn:
            return [row[0] for row in await (await conn.execute(sql.AUDIT_TENANTS)).fetchall()]
