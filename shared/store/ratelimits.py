"""GCRA rate limits in PostgreSQL: one atomic upsert per bucket on the shared ``clock_timestamp()``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from psycopg.rows import dict_row
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.security.ratelimit import RateDecision, RatePolicy, decide, refused
from shared.store import fast

# The whole GCRA step is this one statement: a fresh bucket is admitted with TAT = now + T; an
# existing one moves to max(TAT, now) + T only WHERE that stays within the window (capacity x T),
# else no row comes back and the request is refused. ``now`` is read once, in VALUES.
_HIT = """
INSERT INTO rate_limits AS r (bucket, tat)
VALUES (%(bucket)s, coalesce(CAST(%(at)s AS timestamptz), clock_timestamp()) + make_interval(secs => %(t)s))
ON CONFLICT (bucket) DO UPDATE
   SET tat = greatest(r.tat, excluded.tat - make_interval(secs => %(t)s)) + make_interval(secs => %(t)s)
 WHERE greatest(r.tat, excluded.tat - make_interval(secs => %(t)s)) + make_interval(secs => %(t)s)
       <= excluded.tat - make_interval(secs => %(t)s) + make_interval(secs => %(window)s)
RETURNING extract(epoch FROM r.tat)::float8 AS tat,
          extract(epoch FROM coalesce(CAST(%(at)s AS timestamptz), clock_timestamp()))::float8 AS now
"""
_READ = """
SELECT extract(epoch FROM tat)::float8 AS tat,
       extract(epoch FROM coalesce(CAST(%(at)s AS timestamptz), clock_timestamp()))::float8 AS now
  FROM rate_limits WHERE bucket = %(bucket)s
"""


class _Refused(Exception):
    def __init__(self, answer: RateDecision) -> None:
        super().__init__("refused")
        self.answer = answer


class RateLimiter:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def hit(self, buckets: Sequence[tuple[str, RatePolicy]], *, at: datetime | None = None) -> RateDecision:
        """Charge one request to every bucket, all or nothing; the tightest answer comes back.

        ``at`` replaces the database clock (tests that pin time); production passes None.
        """
        try:
            return await self._hit(buckets, at)
        except _Refused as refusal:
            return refusal.answer

    async def _hit(self, buckets: Sequence[tuple[str, RatePolicy]], at: datetime | None) -> RateDecision:
        async with fast.connection(self.engine) as conn:
            cur = conn.cursor(row_factory=dict_row)
            if len(buckets) == 1:  # one statement is atomic by itself: no transaction holding the row lock
                bucket, policy = buckets[0]
                params = {"bucket": bucket, "t": policy.interval, "window": policy.window, "at": at}
                row = await (await cur.execute(_HIT, params)).fetchone()
                if row is None:
                    current = await (await cur.execute(_READ, {"bucket": bucket, "at": at})).fetchone()
                    assert current is not None
                    return refused(current["tat"], current["now"], policy)
                return decide(row["tat"], row["now"], policy)
            answers: list[RateDecision] = []
            async with conn.transaction():
                for bucket, policy in buckets:
                    params = {"bucket": bucket, "t": policy.interval, "window": policy.window, "at": at}
                    row = await (await cur.execute(_HIT, params)).fetchone()
                    if row is None:
                        current = await (await cur.execute(_READ, {"bucket": bucket, "at": at})).fetchone()
                        assert current is not None
                        answer = refused(current["tat"], current["now"], policy)
                        raise _Refused(answer)  # rolls the transaction back: no bucket keeps a charge
                    answers.append(decide(row["tat"], row["now"], policy))
        return min(answers, key=lambda d: d.remaining)

    async def reset(self, bucket: str) -> None:
        async with fast.connection(self.engine) as conn:
            await conn.execute("DELETE FROM rate_limits WHERE bucket = %(bucket)s", {"bucket": bucket})
