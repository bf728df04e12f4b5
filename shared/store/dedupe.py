"""Event dedupe: the first copy of (tenant, event type, event id) within the TTL is admitted."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from psycopg.rows import dict_row

from shared.security.ratelimit import RateDecision, RatePolicy, decide, refused
from shared.store import statements as sql
from shared.store.columns import fit

if TYPE_CHECKING:
    from shared.store.ratelimits import RateLimiter
    from shared.store.store import Store



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
    """The event gate's dedupe claims and refusal counts (:attr:`shared.store.Store.deduper`)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def claim(self, tenant_id: str, event_type: str, event_id: str, *, ttl_seconds: float,
                    trace_id: str = "", payload_hash: str = "",
                    event_row: Mapping[str, Any] | None = None) -> DedupeOutcome:
        """Claim the event's key. With ``event_row`` (:meth:`~shared.store.triggers.TriggerStore.claim_row`)
        the original copy is stored by the same statement, so a claim is never left without its event (a
        database that goes away rolls both back, and the caller's retry is admitted, not a duplicate).

        One statement for an original copy; a duplicate takes a second one, which counts it."""
        row = fit("event_dedupe", {"tenant_id": tenant_id, "event_type": event_type, "event_id": event_id,
                                   "trace_id": trace_id, "payload_hash": payload_hash})
        params = {"tenant": row["tenant_id"], "etype": row["event_type"], "eid": row["event_id"], "ttl": ttl_seconds,
                  "trace": row["trace_id"], "hash": row["payload_hash"]}
        async with self._store.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            if event_row is None:
                claimed = await (await cur.execute(sql.DEDUPE_CLAIM, params)).fetchone()
            else:
                claimed = await (await cur.execute(sql.DEDUPE_CLAIM_STORING, {**event_row, **params})).fetchone()
            duplicate = claimed is None
            if claimed is None:  # the duplicate counter only counts: one atomic statement of its own
                claimed = await (await cur.execute(sql.DEDUPE_COUNT_DUPLICATE, params)).fetchone()
                assert claimed is not None, "a duplicate's original claim vanished"
        return DedupeOutcome(duplicate, claimed["first_seen_at"], claimed["expires_at"], claimed["trace_id"],
                             claimed["payload_hash"])

    async def claim_charged(self, limiter: RateLimiter, bucket: str, policy: RatePolicy, tenant_id: str,
                            event_type: str, event_id: str, *, ttl_seconds: float, trace_id: str,
                            payload_hash: str, event_row: Mapping[str, Any],
                            ) -> tuple[RateDecision, DedupeOutcome | None]:
        """Charge the request to ``bucket`` (the one rate-limit bucket of ``limiter`` it is charged to) and, if
        the charge is allowed, claim the event's key and store its copy as :meth:`claim` does, in one statement.
        The charge's answer, and the claim's outcome (None when refused: nothing is claimed). A refusal is
        remembered by ``limiter`` as its own are (and a remembered one costs no statement)."""
        stored = limiter.stored(bucket)
        remembered = limiter.remembered((stored,))
        if remembered is not None:
            return remembered, None
        row = fit("event_dedupe", {"tenant_id": tenant_id, "event_type": event_type, "event_id": event_id,
                                   "trace_id": trace_id, "payload_hash": payload_hash})
        params = {"tenant": row["tenant_id"], "etype": row["event_type"], "eid": row["event_id"], "ttl": ttl_seconds,
                  "trace": row["trace_id"], "hash": row["payload_hash"], "bucket": stored, "t": policy.interval,
                  "window": policy.window, "at": None}
        async with self._store.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            charged = await (await cur.execute(sql.RATE_HIT_DEDUPE_CLAIM_STORING, {**event_row, **params})).fetchone()
            if charged is None:
                current = await (await cur.execute(sql.RATE_READ, {"bucket": stored, "at": None})).fetchone()
                assert current is not None, "a refused bucket's row vanished"
                answer = refused(current["tat"], current["now"], policy)
                limiter.remember((stored,), answer)
                return answer, None
            decision = decide(charged["tat"], charged["now"], policy)
            duplicate = charged["first_seen_at"] is None
            claimed: dict[str, Any] | None = charged
            if duplicate:  # the duplicate counter only counts: one atomic statement of its own
                claimed = await (await cur.execute(sql.DEDUPE_COUNT_DUPLICATE, params)).fetchone()
            assert claimed is not None, "a duplicate's original claim vanished"
        return decision, DedupeOutcome(duplicate, claimed["first_seen_at"], claimed["expires_at"], claimed["trace_id"],
                                       claimed["payload_hash"])

    async def release(self, tenant_id: str, event_type: str, event_id: str, first_seen_at: datetime) -> None:
        """Forget the claim made at ``first_seen_at`` (its event could not be routed; a retry may claim again)."""
        async with self._store.connection() as conn:
            await conn.execute(sql.DEDUPE_RELEASE, {"tenant": tenant_id, "etype": event_type, "eid": event_id,
                                                    "seen": first_seen_at})

    async def count_rate_limited(self, tenant_id: str) -> None:
        """Count one event the rate limit refused in the tenant's current minute."""
        async with self._store.connection() as conn:
            await conn.execute(sql.DEDUPE_COUNT_RATE_LIMITED, {"tenant": tenant_id})

    async def refusals(self, tenant_id: str, since: datetime) -> Sequence[GateMinute]:
        """Duplicates and rate-limit refusals of the tenant's events per minute since ``since``, oldest first."""
        async with self._store.connection() as conn:
            rows = await (await conn.execute(sql.GATE_REFUSALS, {"t": tenant_id, "since": since})).fetchall()
        return [GateMinute(row[0], int(row[1]), int(row[2])) for row in rows]
