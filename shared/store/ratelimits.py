"""GCRA rate limits in PostgreSQL: one atomic upsert per bucket on the shared ``clock_timestamp()``."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from psycopg.rows import dict_row

from shared.security.ratelimit import RateDecision, RatePolicy, decide, refused
from shared.store import statements as sql
from shared.store.columns import columns

if TYPE_CHECKING:
    from shared.store.store import Store



def _bucket(name: str) -> str:
    """The stored key of bucket ``name`` (``rate_limits.bucket`` is clipped: an actor's id is not bounded)."""
    return columns()["rate_limits"]["bucket"].fit(name)


class _Refused(Exception):
    def __init__(self, answer: RateDecision) -> None:
        super().__init__("refused")
        self.answer = answer


class RateLimiter:
    """GCRA buckets in PostgreSQL, shared by every process.

    A refusal is remembered in this process until its ``retry_after`` has passed, and the same
    buckets are refused from memory meanwhile, without a round trip: exact, since a bucket only
    gains capacity as time passes (another process's requests can only push it further out). So a
    tenant that keeps sending after its budget is spent costs no database work per request.
    """

    #: remembered refusals kept at most (expired ones are dropped first)
    MAX_REMEMBERED = 10_000

    def __init__(self, store: Store) -> None:
        self._store = store
        #: buckets -> (monotonic time until which they refuse, the refusal as answered)
        self._refusing: dict[tuple[str, ...], tuple[float, RateDecision]] = {}

    @staticmethod
    def stored(name: str) -> str:
        """The stored key of bucket ``name`` (clipped to its column)."""
        return _bucket(name)

    def remembered(self, key: tuple[str, ...]) -> RateDecision | None:
        """The refusal remembered for the stored buckets ``key``, its wait counted down; None when there is
        none (or it has passed): the buckets must be charged in the database."""
        if key not in self._refusing:
            return None
        until, answer = self._refusing[key]
        left = until - time.monotonic()
        if left > 0:
            elapsed = answer.retry_after - left
            return dataclasses.replace(answer, retry_after=left, reset=max(answer.reset - elapsed, 0.0))
        del self._refusing[key]
        return None

    async def hit(self, buckets: Sequence[tuple[str, RatePolicy]], *, at: datetime | None = None) -> RateDecision:
        """Charge one request to every bucket, all or nothing; the tightest answer comes back.

        ``at`` replaces the database clock (tests that pin time); production passes None.
        """
        buckets = [(_bucket(bucket), policy) for bucket, policy in buckets]
        key = tuple(bucket for bucket, _ in buckets)
        if at is None and (answer := self.remembered(key)) is not None:
            return answer
        try:
            return await self._hit(buckets, at)
        except _Refused as refusal:
            if at is None:
                self._remember(key, refusal.answer)
            return refusal.answer

    def remember(self, key: tuple[str, ...], answer: RateDecision) -> None:
        """Refuse the stored buckets ``key`` from memory until ``answer``'s wait has passed (a refusal the
        database answered to a statement that charged them along with other work)."""
        self._remember(key, answer)

    def _remember(self, key: tuple[str, ...], answer: RateDecision) -> None:
        now = time.monotonic()
        if len(self._refusing) >= self.MAX_REMEMBERED:
            self._refusing = {k: v for k, v in self._refusing.items() if v[0] > now}
            if len(self._refusing) >= self.MAX_REMEMBERED:
                return
        self._refusing[key] = (now + answer.retry_after, answer)

    async def _hit(self, buckets: Sequence[tuple[str, RatePolicy]], at: datetime | None) -> RateDecision:
        async with self._store.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            if len(buckets) == 1:  # one statement is atomic by itself: no transaction holding the row lock
                bucket, policy = buckets[0]
                params = {"bucket": bucket, "t": policy.interval, "window": policy.window, "at": at}
                row = await (await cur.execute(sql.RATE_HIT, params)).fetchone()
                if row is None:
                    current = await (await cur.execute(sql.RATE_READ, {"bucket": bucket, "at": at})).fetchone()
                    assert current is not None
                    raise _Refused(refused(current["tat"], current["now"], policy))
                return decide(row["tat"], row["now"], policy)
            answers: list[RateDecision] = []
            async with conn.transaction():
                for bucket, policy in buckets:
                    params = {"bucket": bucket, "t": policy.interval, "window": policy.window, "at": at}
                    row = await (await cur.execute(sql.RATE_HIT, params)).fetchone()
                    if row is None:
                        current = await (await cur.execute(sql.RATE_READ, {"bucket": bucket, "at": at})).fetchone()
                        assert current is not None
                        answer = refused(current["tat"], current["now"], policy)
                        raise _Refused(answer)  # rolls the transaction back: no bucket keeps a charge
                    answers.append(decide(row["tat"], row["now"], policy))
        return min(answers, key=lambda d: d.remaining)

    async def reset(self, bucket: str) -> None:
        self._refusing = {key: v for key, v in self._refusing.items() if bucket not in key}
        async with self._store.connection() as conn:
            await conn.execute(sql.RATE_RESET, {"bucket": _bucket(bucket)})
