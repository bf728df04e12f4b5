"""Event dedupe: the first copy of (tenant, event type, event id) within the TTL is admitted."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from psycopg.rows import dict_row
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.store import fast

# One atomic upsert: a new key is inserted; an existing key is re-armed only WHERE it has expired.
# A row back = this copy is the original; no row = a duplicate within the TTL.
_CLAIM = """
INSERT INTO event_dedupe AS d (tenant_id, event_type, event_id, first_seen_at, expires_at, trace_id,
                               payload_hash, duplicates)
SELECT %(tenant)s, %(etype)s, %(eid)s, c.now, c.now + make_interval(secs => %(ttl)s), %(trace)s, %(hash)s, 0
  FROM (SELECT clock_timestamp() AS now) AS c
ON CONFLICT (tenant_id, event_type, event_id) DO UPDATE
   SET first_seen_at = excluded.first_seen_at, expires_at = excluded.expires_at, trace_id = excluded.trace_id,
       payload_hash = excluded.payload_hash, duplicates = 0
 WHERE d.expires_at <= excluded.first_seen_at
RETURNING first_seen_at, expires_at, trace_id, payload_hash
"""
# the duplicate is counted on its original's row and in the tenant's minute (one statement)
_COUNT_DUPLICATE = """
WITH minute AS (
  INSERT INTO event_gate_minutes AS m (tenant_id, minute, duplicates)
  VALUES (%(tenant)s, date_trunc('minute', clock_timestamp()), 1)
  ON CONFLICT (tenant_id, minute) DO UPDATE SET duplicates = m.duplicates + 1
)
UPDATE event_dedupe SET duplicates = duplicates + 1
 WHERE tenant_id = %(tenant)s AND event_type = %(etype)s AND event_id = %(eid)s
RETURNING first_seen_at, expires_at, trace_id, payload_hash
"""
_COUNT_RATE_LIMITED = """
INSERT INTO event_gate_minutes AS m (tenant_id, minute, rate_limited)
VALUES (%(tenant)s, date_trunc('minute', clock_timestamp()), 1)
ON CONFLICT (tenant_id, minute) DO UPDATE SET rate_limited = m.rate_limited + 1
"""


@dataclass(frozen=True, slots=True)
class GateMinute:
    """What the event gate turned away for a tenant in one minute."""

    minute: datetime
    duplicates: int
    rate_limited: int


@dataclass(frozen=True, slots=True)
class DedupeOutcome:
    duplicate: bool
    #: the original copy's first sighting, trace id and payload hash
    first_seen_at: datetime
    expires_at: datetime
    original_trace_id: str
    original_payload_hash: str


class EventDeduper:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def claim(self, tenant_id: str, event_type: str, event_id: str, *, ttl_seconds: float,
                    trace_id: str = "", payload_hash: str = "",
                    admitted: Callable[[fast.Conn, DedupeOutcome], Awaitable[None]] | None = None) -> DedupeOutcome:
        """Claim the event's key; ``admitted`` (storing the event) runs in the same transaction when
        this copy is the original, so a claim is never left without its event (a database that goes
        away in between rolls both back, and the caller's retry is admitted, not a duplicate)."""
        params = {"tenant": tenant_id, "etype": event_type, "eid": event_id, "ttl": ttl_seconds,
                  "trace": trace_id, "hash": payload_hash}
        async with fast.connection(self.engine) as conn:
            if admitted is None:  # the claim is one atomic upsert; the duplicate counter only counts
                return await self._claim(conn, params, None)
            async with conn.transaction():
                return await self._claim(conn, params, admitted)

    @staticmethod
    async def _claim(conn: fast.Conn, params: dict[str, object],
                     admitted: Callable[[fast.Conn, DedupeOutcome], Awaitable[None]] | None) -> DedupeOutcome:
        cur = conn.cursor(row_factory=dict_row)
        row = await (await cur.execute(_CLAIM, params)).fetchone()
        duplicate = row is None
        if row is None:
            row = await (await cur.execute(_COUNT_DUPLICATE, params)).fetchone()
            assert row is not None, "a duplicate's original claim vanished"
        outcome = DedupeOutcome(duplicate, row["first_seen_at"], row["expires_at"], row["trace_id"],
                                row["payload_hash"])
        if not duplicate and admitted is not None:
            await admitted(conn, outcome)
        return outcome

    async def release(self, tenant_id: str, event_type: str, event_id: str, first_seen_at: datetime) -> None:
        """Forget the claim made at ``first_seen_at`` (its event could not be routed; a retry may claim again)."""
        async with fast.connection(self.engine) as conn:
            await conn.execute("DELETE FROM event_dedupe WHERE tenant_id = %(tenant)s AND event_type = %(etype)s "
                               "AND event_id = %(eid)s AND first_seen_at = %(seen)s",
                               {"tenant": tenant_id, "etype": event_type, "eid": event_id, "seen": first_seen_at})

    async def count_rate_limited(self, tenant_id: str) -> None:
        """Count one event the rate limit refused in the tenant's current minute."""
        async with fast.connection(self.engine) as conn:
            await conn.execute(_COUNT_RATE_LIMITED, {"tenant": tenant_id})

    async def refusals(self, tenant_id: str, since: datetime) -> Sequence[GateMinute]:
        """Duplicates and rate-limit refusals of the tenant's events per minute since ``since``, oldest first."""
        async with fast.connection(self.engine) as conn:
            rows = await (await conn.execute(
                "SELECT minute, duplicates, rate_limited FROM event_gate_minutes "
                "WHERE tenant_id = %(t)s AND minute >= %(since)s ORDER BY minute",
                {"t": tenant_id, "since": since})).fetchall()
        return [GateMinute(row[0], int(row[1]), int(row[2])) for row in rows]
