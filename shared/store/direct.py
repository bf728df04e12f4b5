"""The store's reads for commands that read one thing and exit (``jobforge flags``, ``jobforge runs list``),
over one plain psycopg connection, and the same reads for :class:`~shared.store.Store` on its own connections.

Importing SQLAlchemy and building the ORM's tables costs a short command more than everything else it
does, so such a command opens one psycopg connection from the same ``JOBFORGE_DATABASE_URL``
(:func:`connect`) and calls the function :class:`~shared.store.Store` calls for the same read: each takes
a connection and runs a named statement of :mod:`shared.store.statements`.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.store import statements as sql

if TYPE_CHECKING:
    import psycopg

    from jobforge.models import RunRecord
    from shared.flags import Flag
    from shared.store.rows import RunFilter

_DRIVER = re.compile(r"^postgres(?:ql)?\+[A-Za-z0-9_]+://")


def conninfo(url: str) -> str:
    """The libpq connection URI of a SQLAlchemy database URL (``postgresql+psycopg://...``)."""
    return _DRIVER.sub("postgresql://", url, count=1)


@contextlib.asynccontextmanager
async def connect(url: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """One autocommit connection to the database of ``url``, closed when the block ends."""
    import psycopg

    async with await psycopg.AsyncConnection.connect(conninfo(url), autocommit=True) as conn:
        yield conn


async def flag_overrides(conn: psycopg.AsyncConnection[Any]) -> dict[Flag, bool]:
    """The stored overrides by flag; a row naming a flag this code does not know (retired) is skipped."""
    from shared.flags import Flag

    rows = await (await conn.execute(sql.FLAG_OVERRIDES)).fetchall()
    known = {flag.value: flag for flag in Flag}
    return {known[name]: bool(enabled) for name, enabled in rows if name in known}


async def tenant_exists(conn: psycopg.AsyncConnection[Any], tenant_id: str) -> bool:
    return await (await conn.execute(sql.TENANT_EXISTS, {"t": tenant_id})).fetchone() is not None


async def require_tenant(conn: psycopg.AsyncConnection[Any], tenant_id: str) -> None:
    """:class:`~jobforge.errors.UnknownTenant` unless the tenant exists."""
    from jobforge.errors import UnknownTenant

    if not await tenant_exists(conn, tenant_id):
        raise UnknownTenant(tenant_id)


async def runs(conn: psycopg.AsyncConnection[Any], tenant_id: str, where: RunFilter | None, limit: int, *,
               after: tuple[datetime, str] | None = None) -> list[RunRecord]:
    """The tenant's ``limit`` newest runs matching ``where``, newest first; with ``after`` (created at, run
    id), only those older than that run (the next page)."""
    from psycopg.rows import dict_row

    from shared.store.rows import run_record

    params: dict[str, object] = {"tenant": tenant_id, "limit": limit, **(where.bound() if where else {})}
    if after is not None:
        params["c_at"], params["c_id"] = after
    statement = sql.runs([name for name in sql.RUNS_FILTERS if name in params], after_cursor=after is not None)
    cur = conn.cursor(row_factory=dict_row)
    return [run_record(row) for row in await (await cur.execute(statement, params)).fetchall()]
