"""PostgreSQL without SQLAlchemy, for commands that read one thing and exit (``jobforge flags``,
``jobforge runs list``).

Importing SQLAlchemy and building the ORM's tables costs a short command more than everything else it
does, so such a command opens one psycopg connection from the same ``JOBFORGE_DATABASE_URL`` and runs
the statement :class:`~shared.store.Store` runs for the same read (the statements live here, once).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

    from shared.flags import Flag
    from shared.models import RunRecord

#: the stored feature-flag overrides (shared.flags)
FLAG_OVERRIDES = "SELECT name, enabled FROM flag_overrides"

#: whether a tenant exists (the statement of :meth:`shared.store.tenants.TenantStore.require`)
TENANT_EXISTS = "SELECT 1 FROM tenants WHERE tenant_id = %(t)s"

#: a tenant's newest runs (``jobforge runs list``)
RECENT_RUNS = ("SELECT tenant_id, template_key, workflow_id, run_id, status, trace_id, actor, idempotency_key, "
               "input_hash, summary, error, created_at, updated_at, finished_at FROM runs "
               "WHERE tenant_id = %(tenant)s ORDER BY created_at DESC LIMIT %(limit)s")

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

    rows = await (await conn.execute(FLAG_OVERRIDES)).fetchall()
    known = {flag.value: flag for flag in Flag}
    return {known[name]: bool(enabled) for name, enabled in rows if name in known}


async def require_tenant(conn: psycopg.AsyncConnection[Any], tenant_id: str) -> None:
    """:class:`~shared.errors.UnknownTenant` unless the tenant exists."""
    from shared.errors import UnknownTenant

    if await (await conn.execute(TENANT_EXISTS, {"t": tenant_id})).fetchone() is None:
        raise UnknownTenant(tenant_id)


async def recent_runs(conn: psycopg.AsyncConnection[Any], tenant_id: str, limit: int) -> list[RunRecord]:
    """The tenant's ``limit`` newest runs, newest first."""
    from psycopg.rows import dict_row

    from shared.models import RunRecord

    cur = conn.cursor(row_factory=dict_row)
    rows = await (await cur.execute(RECENT_RUNS, {"tenant": tenant_id, "limit": limit})).fetchall()
    return [RunRecord.model_validate({**row, "summary": row["summary"] or {}, "error": row["error"] or ""})
            for row in rows]
