"""Worker-process bodies for the multi-process race tests of the gate's PostgreSQL services.

Each function runs in a spawned process with its own store, waits for a shared start time so the
processes really overlap, and returns what it saw.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

from shared.security.audit import AuditFact, Decision
from shared.security.ratelimit import RatePolicy
from shared.store import Store

CONCURRENCY = 4


async def _race(url: str, start_at: float, n: int, op: str, key: str, at: datetime | None) -> int:
    store = Store.from_url(url, pool_size=CONCURRENCY)
    try:
        deduper, limiter, audit = store.deduper, store.limiter, store.audit
        policy = RatePolicy(100, 60)
        async with store.connection():  # open a connection before the start line
            pass
        await asyncio.sleep(max(start_at - time.time(), 0))
        admitted = 0
        sem = asyncio.Semaphore(CONCURRENCY)

        async def one(i: int) -> None:
            nonlocal admitted
            async with sem:
                if op == "dedupe":
                    outcome = await deduper.claim(key, "order.created", "evt-1", ttl_seconds=300,
                                                  trace_id=f"t{i}")
                    admitted += not outcome.duplicate
                elif op == "ratelimit":
                    decision = await limiter.hit([(key, policy)], at=at)
                    admitted += decision.allowed
                else:
                    await audit.append(AuditFact(key, f"proc-{i}", "jobs.request", "a.b.c", Decision.ALLOW,
                                                 "race", f"t{i}"))
                    admitted += 1

        await asyncio.gather(*(one(i) for i in range(n)))
        return admitted
    finally:
        await store.close()


def race(url: str, start_at: float, n: int, op: str, key: str, at: datetime | None = None) -> int:
    return asyncio.run(_race(url, start_at, n, op, key, at))
