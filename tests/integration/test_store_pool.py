"""The store's connection pool (``shared.store.fast.FastPool``): bursts, a full pool, connections left unusable."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from jobforge.errors import StoreUnavailable
from shared.outages import as_outage
from shared.store import direct, fast, statements
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


async def _pids_of_a_burst(pool: FastPool, size: int) -> set[int]:
    """The backends of ``size`` connections held at once (a burst), all returned afterwards."""
    async with contextlib.AsyncExitStack() as held:
        conns = [await held.enter_async_context(pool.connection()) for _ in range(size)]
        return {conn.info.backend_pid for conn in conns}


async def test_a_burst_beyond_the_size_reuses_its_connections_until_they_idle_out(
        pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Connections opened beyond the pool's size for a burst serve the next burst (no new backends); once they
    have idled longer than OVERFLOW_IDLE_SECONDS, returning a connection closes them down to the size."""
    pool = FastPool(direct.conninfo(pg_url), size=1, overflow=2)
    first = await _pids_of_a_burst(pool, 3)
    assert len(first) == 3
    assert await _pids_of_a_burst(pool, 3) == first
    monkeypatch.setattr(fast, "OVERFLOW_IDLE_SECONDS", 0.0)
    async with pool.connection():
        pass  # the return finds the others idle for longer than 0 s
    kept = await _pids_of_a_burst(pool, 3)
    assert len(kept & first) == 1 and len(kept) == 3
    pool.close()
