"""Console sessions: a random cookie value in the browser, only its SHA-256 here.

A tenant session names the API key it was opened with (the key's current scopes apply on every
request, and revoking the key ends the session); an operator session keeps the digest of the
operator token it was opened with (a new token ends it). Sessions expire; expired rows are removed
when the next session opens.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from psycopg.rows import dict_row
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.store import fast


def digest(secret: str) -> str:
    """The SHA-256 (hex) under which a session id or an operator token is kept."""
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    #: None: an operator session
    tenant_id: str | None
    key_id: str | None
    operator_sha256: str | None
    actor: str
    csrf_token: str
    created_at: datetime
    expires_at: datetime

    @property
    def is_operator(self) -> bool:
        return self.tenant_id is None


@dataclass(frozen=True, slots=True)
class OpenedSession:
    #: the cookie's value (shown to the browser once, never stored)
    token: str
    session: ConsoleSession


class ConsoleSessions:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def open(self, *, actor: str, ttl_seconds: float, tenant_id: str | None = None, key_id: str | None = None,
                   operator_sha256: str | None = None) -> OpenedSession:
        """A new session (and the removal of expired ones)."""
        token = secrets.token_urlsafe(32)
        params = {"id": digest(token), "tenant": tenant_id, "key": key_id, "op": operator_sha256, "actor": actor[:200],
                  "csrf": secrets.token_urlsafe(32), "ttl": ttl_seconds}
        async with fast.connection(self.engine) as conn:
            await conn.execute("DELETE FROM console_sessions WHERE expires_at < now()")
            cur = conn.cursor(row_factory=dict_row)
            row = await (await cur.execute(
                "INSERT INTO console_sessions (id_sha256, tenant_id, key_id, operator_sha256, actor, csrf_token, "
                "expires_at) VALUES (%(id)s, %(tenant)s, %(key)s, %(op)s, %(actor)s, %(csrf)s, "
                "now() + make_interval(secs => %(ttl)s)) RETURNING *", params)).fetchone()
        assert row is not None
        return OpenedSession(token, _session(row))

    async def get(self, token: str) -> ConsoleSession | None:
        """The live session of a cookie value (None: unknown or expired)."""
        if not token or len(token) > 100:
            return None
        async with fast.connection(self.engine) as conn:
            cur = conn.cursor(row_factory=dict_row)
            row = await (await cur.execute(
                "SELECT * FROM console_sessions WHERE id_sha256 = %(id)s AND expires_at > now()",
                {"id": digest(token)})).fetchone()
        return _session(row) if row is not None else None

    async def close(self, token: str) -> None:
        async with fast.connection(self.engine) as conn:
            await conn.execute("DELETE FROM console_sessions WHERE id_sha256 = %(id)s", {"id": digest(token)})


def _session(row: dict[str, object]) -> ConsoleSession:
    return ConsoleSession(
        tenant_id=row["tenant_id"],  # type: ignore[arg-type]
        key_id=row["key_id"],  # type: ignore[arg-type]
        operator_sha256=row["operator_sha256"],  # type: ignore[arg-type]
        actor=str(row["actor"]), csrf_token=str(row["csrf_token"]),
        created_at=row["created_at"],  # type: ignore[arg-type]
        expires_at=row["expires_at"],  # type: ignore[arg-type]
    )
