"""The store's one connection path: raw psycopg connections for every statement (``Store.connection()``).

SQLAlchemy's async engine costs about 0.6 ms of CPU per checkout and statement on top of psycopg's
0.15 ms (greenlet hand-offs, pool events, reset on return); an event's path runs a dozen or so
single statements, so every store talks to PostgreSQL through :func:`connection`:

* for an engine made by :func:`shared.store.create_engine`, a small pool of psycopg connections in
  autocommit mode, one per event loop that uses it: up to the engine's pool size kept open, up to
  :data:`OVERFLOW` more opened for a burst and closed when returned (as SQLAlchemy's pool would), all
  closed when the engine is disposed (``Engine.dispose`` / ``Store.close``);
* for any other engine, the driver connection of one of the engine's own pooled connections (in
  autocommit), so the same code runs on both.

Code written against it uses psycopg's API (``%(name)s`` parameters, ``conn.transaction()`` for
the few steps that need several statements to hold together).
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine

Conn = psycopg.AsyncConnection[Any]


@dataclass
class _LoopPool:
    gate: asyncio.Semaphore
    idle: list[Conn] = field(default_factory=list)


class FastPool:
    """Up to ``size`` + ``overflow`` autocommit psycopg connections per event loop, ``size`` of them kept
    open between uses and reused LIFO."""

    def __init__(self, conninfo: str, size: int, overflow: int = 0) -> None:
        self.conninfo = conninfo
        self.size = size
        self.overflow = overflow
        self.disposed = False
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopPool] = weakref.WeakKeyDictionary()

    def _pool(self) -> _LoopPool:
        loop = asyncio.get_running_loop()
        pool = self._loops.get(loop)
        if pool is None:
            pool = self._loops[loop] = _LoopPool(asyncio.Semaphore(self.size + self.overflow))
        return pool

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Conn]:
        pool = self._pool()
        async with pool.gate:
            conn: Conn | None = None
            while pool.idle and conn is None:
                candidate = pool.idle.pop()
                if not candidate.closed:
                    conn = candidate
            if conn is None:
                conn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
            try:
                yield conn
            finally:
                healthy = not conn.closed and conn.info.transaction_status == TransactionStatus.IDLE
                if healthy and not self.disposed and len(pool.idle) < self.size:
                    pool.idle.append(conn)
                else:
                    await conn.close()

    def dispose(self) -> None:
        """Close every idle connection now (synchronously); connections in use close when returned."""
        self.disposed = True
        for pool in list(self._loops.values()):
            while pool.idle:
                conn = pool.idle.pop()
                if not conn.closed:
                    conn.pgconn.finish()


#: connections a pool opens beyond its size for a burst (SQLAlchemy's default ``max_overflow``)
OVERFLOW = 10

_pools: weakref.WeakKeyDictionary[Engine, FastPool] = weakref.WeakKeyDictionary()


def attach(engine: AsyncEngine, size: int) -> None:
    """Give ``engine`` a :class:`FastPool` on the same database, closed when the engine is disposed."""
    url = engine.url.set(drivername="postgresql")
    pool = FastPool(url.render_as_string(hide_password=False), size, OVERFLOW)
    sync_engine = engine.sync_engine
    _pools[sync_engine] = pool

    @event.listens_for(sync_engine, "engine_disposed")
    def _disposed(_engine: Engine) -> None:
        current = _pools.get(sync_engine)
        if current is not None:
            current.dispose()
            # a disposed engine is still usable (SQLAlchemy opens new connections): so is its pool
            _pools[sync_engine] = FastPool(current.conninfo, current.size, current.overflow)


@contextlib.asynccontextmanager
async def connection(engine: AsyncEngine) -> AsyncIterator[Conn]:
    """An autocommit psycopg connection to ``engine``'s database, for as long as the block runs."""
    pool = _pools.get(engine.sync_engine)
    if pool is not None:
        async with pool.connection() as conn:
            yield conn
        return
    async with engine.execution_options(isolation_level="AUTOCOMMIT").connect() as sa_conn:
        raw = await sa_conn.get_raw_connection()
        driver = raw.driver_connection
        assert isinstance(driver, psycopg.AsyncConnection)
        yield driver
