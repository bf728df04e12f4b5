"""GCRA rate limits in PostgreSQL: one atomic upsert per bucket on the shared ``clock_timestamp()``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.security.ratelimit import RateDecision, RatePolicy, decide, refused

# The whole GCRA step is this one statement: a fresh bucket is admitted with TAT = now + T; an
# existing one moves to max(TAT, now) + T only WHERE that stays within the window (capacity x T),
# else no row comes back and the request is refused. ``now`` is read once, in VALUES.
_HIT = text("""
INSERT INTO rate_limits AS r (bucket, tat)
VALUES (:bucket, coalesce(CAST(:at AS timestamptz), clock_timestamp()) + make_interval(secs => :t))
ON CONFLICT (bucket) DO UPDATE
   SET tat = greatest(r.tat, excluded.tat - make_interval(secs => :t)) + make_interval(secs => :t)
 WHERE greatest(r.tat, excluded.tat - make_interval(secs => :t)) + make_interval(secs => :t)
       <= excluded.tat - make_interval(secs => :t) + make_interval(secs => :window)
RETURNING extract(epoch FROM r.tat)::float8 AS tat,
          extract(epoch FROM coalesce(CAST(:at AS timestamptz), clock_timestamp()))::float8 AS now
""")
_READ = text("""
SELECT extract(epoch FROM tat)::float8 AS tat,
       extract(epoch FROM coalesce(CAST(:at AS timestamptz), clock_timestamp()))::float8 AS now
  FROM rate_limits WHERE bucket = :bucket
""")


class RateLimiter:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def hit(self, buckets: Sequence[tuple[str, RatePolicy]], *, at: datetime | None = None) -> RateDecision:
        """Charge one request to every bucket, all or nothing; the tightest answer comes back.

        ``at`` replaces the database clock (tests that pin time); production passes None.
        """
        if len(buckets) == 1:  # one statement is atomic by itself: no transaction holding the row lock
            bucket, policy = buckets[0]
            params = {"bucket": bucket, "t": policy.interval, "window": policy.window, "at": at}
            async with self.engine.connect() as conn:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                row = (await conn.execute(_HIT, params)).one_or_none()
                if row is None:
                    current = (await conn.execute(_READ, {"bucket": bucket, "at": at})).one()
                    return refused(current.tat, current.now, policy)
            return decide(row.tat, row.now, policy)
        answers: list[RateDecision] = []
        async with self.engine.connect() as conn:
            tx = await conn.begin()
            for bucket, policy in buckets:
                params = {"bucket": bucket, "t": policy.interval, "window": policy.window, "at": at}
                row = (await conn.execute(_HIT, params)).one_or_none()
                if row is None:
                    current = (await conn.execute(_READ, {"bucket": bucket, "at": at})).one()
                    await tx.rollback()  # refuse the whole request: no bucket keeps a charge
                    return refused(current.tat, current.now, policy)
                answers.append(decide(row.tat, row.now, policy))
            await tx.commit()
        return min(answers, key=lambda d: d.remaining)

    async def reset(self, bucket: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(text("DELETE FROM rate_limits WHERE bucket = :bucket"), {"bucket": bucket})
