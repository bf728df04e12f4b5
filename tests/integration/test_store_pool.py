"""The store's connection pool (``shared.store.fast.FastPool``): bursts, a full pool, connections left unusable."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from jobforge.errors import StoreUnavailable
from shared.outages import as_outage
from shared.store import direct, statements
from shared.store.fast import FastPool, PoolTimeout

pytestmark = pytest.mark.integration


async def test_a_full_pool_refuses_with_a_typed_error_after_its_timeout(pg_url: str) -> None:
    """Every connection in use for the whole wait: PoolTimeout, which callers see as store_unavailable;
    once one is returned the next caller gets it."""
    pool = FastPool(direct.conninfo(pg_url), size=1, overflow=1, timeout=0.2)
    async with contextlib.AsyncExitStack() as held:
        for _ in range(2):
            await held.enter_async_context(pool.connection())
        with pytest.raises(PoolTimeout) as refused:
            async with pool.connection():
                pass
        outage = as_outage(refused.value)
        assert isinstance(outage, StoreUnavailable) and "too busy" in outage.message
    async with pool.connection() as conn:
        assert await (await conn.execute(statements.PING)).fetchone() == (1,)
    pool.close()


async def test_a_waiting_caller_gets_the_connection_returned_within_the_timeout(pg_url: str) -> None:
    """A caller that finds the pool full waits for the connection another returns, not for a new one."""
    pool = FastPool(direct.conninfo(pg_url), size=1, overflow=0, timeout=30)
    returned = asyncio.Event()
    async with pool.connection() as first:
        waiter = asyncio.create_task(_pid_when_free(pool, returned))
        await asyncio.sleep(0)  # the waiter is queued on the full pool
        assert not waiter.done()
        pid = first.info.backend_pid
        returned.set()
    assert await waiter == pid
    pool.close()


async def _pid_when_free(pool: FastPool, returned: asyncio.Event) -> int:
    async with pool.connection() as conn:
        assert returned.is_set()
        return conn.info.backend_pid


async def test_a_connection_left_in_a_transaction_is_not_reused(pg_url: str) -> None:
    """A block that fails inside a transaction leaves no open transaction for the next caller."""
    pool = FastPool(direct.conninfo(pg_url), size=1, overflow=0)
    async with pool.connection() as conn:
        first = conn.info.backend_pid
        await conn.execute("BEGIN")
    async with pool.connection() as conn:
        assert conn.info.backend_pid != first
        assert await (await conn.execute(statements.PING)).fetchone() == (1,)
    pool.close()
