"""The store's one connection path: a pool of raw psycopg connections (``Store.connection()``).

Every statement of the store runs over one of these: SQLAlchemy's async engine would cost about 0.6 ms
of CPU per checkout and statement on top of psycopg's 0.15 ms (greenlet hand-offs, pool events, reset on
return), and an event's path runs a dozen or so single statements.

A :class:`FastPool` keeps, per event loop that uses it, up to ``size`` autocommit connections open
between uses (reused LIFO) and opens up to ``overflow`` more for a burst, kept too until they have been
idle for :data:`OVERFLOW_IDLE_SECONDS` (a worker's bursts, a router batch firing its events at once, come
every few hundred milliseconds under load: closing the extra connections after each burst made every
burst open them again, a connection and a PostgreSQL backend each time); a
caller that finds all of them in use waits up to ``timeout`` seconds for one, then gets
:class:`PoolTimeout` (503 ``store_unavailable``, "too busy", at the API). A
connection that broke (its server restarted) or was left inside a transaction is closed instead of
reused, so a restart costs each process a few failed statements, which activities retry and the API
answers with 503 ``store_unavailable``. Code written against it uses psycopg's API (``%(name)s``
parameters, ``conn.transaction()`` for the few steps that need several statements to hold together).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

Conn = psycopg.AsyncConnection[Any]

#: connections a pool opens beyond its size for a burst (what SQLAlchemy's pool allowed by default)
OVERFLOW = 10
#: seconds a caller waits for a connection when all are in use (SQLAlchemy's pool default)
TIMEOUT = 30.0
#: seconds a connection beyond the pool's size stays open unused before it is closed (when a connection is
#: next returned)
OVERFLOW_IDLE_SECONDS = 30.0


class PoolTimeout(TimeoutError):
    """Every connection of the pool stayed in use for the whole wait: the database is too busy."""


@dataclass
class _LoopPool:
    gate: asyncio.Semaphore
    #: open connections not in use, each with when it was returned (monotonic), least recently used first
    idle: list[tuple[Conn, float]] = field(default_factory=list)


class FastPool:
    """Up to ``size`` + ``overflow`` autocommit psycopg connections per event loop, ``size`` of them kept
    open between uses and reused LIFO."""

    def __init__(self, conninfo: str, size: int, overflow: int = OVERFLOW, timeout: float = TIMEOUT) -> None:
        self.conninfo = conninfo
        self.size = size
        self.overflow = overflow
        self.timeout = timeout
        self.closed = False
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
        if not pool.gate.locked():
            await pool.gate.acquire()  # a free slot: no timer to arm
        else:
            try:
                await asyncio.wait_for(pool.gate.acquire(), self.timeout)
            except TimeoutError:
                raise PoolTimeout(f"no database connection came free within {self.timeout:g} s "
                                  f"({self.size + self.overflow} in use)") from None
        try:
            conn: Conn | None = None
            while pool.idle and conn is None:
                candidate, _ = pool.idle.pop()
                if not candidate.closed:
                    conn = candidate
            if conn is None:
                conn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
            try:
                yield conn
            finally:
                healthy = not conn.closed and conn.info.transaction_status == TransactionStatus.IDLE
                now = time.monotonic()
                if healthy and not self.closed and len(pool.idle) < self.size + self.overflow:
                    pool.idle.append((conn, now))
                else:
                    await conn.close()
                while len(pool.idle) > self.size and now - pool.idle[0][1] > OVERFLOW_IDLE_SECONDS:
                    await pool.idle.pop(0)[0].close()
        finally:
            pool.gate.release()

    def close(self) -> None:
        """Close every idle connection now (synchronously, whatever loop opened it); connections in use
        close when returned. The pool still opens connections afterwards (it is only emptied), and keeps none."""
        self.closed = True
        for pool in list(self._loops.values()):
            while pool.idle:
                conn, _ = pool.idle.pop()
                if not conn.closed:
                    conn.pgconn.finish()
