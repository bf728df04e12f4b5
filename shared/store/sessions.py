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
from typing import TYPE_CHECKING

from psycopg.rows import dict_row

from shared.store import statements as sql
from shared.store.columns import fit

if TYPE_CHECKING:
    from shared.store.store import Store


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
    """The console's signed-in browsers (:attr:`shared.store.Store.sessions`)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def open(self, *, actor: str, ttl_seconds: float, tenant_id: str | None = None, key_id: str | None = None,
                   operator_sha256: str | None = None) -> OpenedSession:
        """A new session (and the removal of expired ones)."""
        token = secrets.token_urlsafe(32)
        row = fit("console_sessions", {"id_sha256": digest(token), "tenant_id": tenant_id, "key_id": key_id,
                                       "operator_sha256": operator_sha256, "actor": actor,
                                       "csrf_token": secrets.token_urlsafe(32)})
        params = {"id": row["id_sha256"], "tenant": row["tenant_id"], "key": row["key_id"],
                  "op": row["operator_sha256"], "actor": row["actor"], "csrf": row["csrf_token"], "ttl": ttl_seconds}
        async with self._store.connection() as conn:
            await conn.execute(sql.SESSIONS_DROP_EXPIRED)
            cur = conn.cursor(row_factory=dict_row)
            opened = await (await cur.execute(sql.SESSION_OPEN, params)).fetchone()
        assert opened is not None
        return OpenedSession(token, _session(opened))

    async def get(self, token: str) -> ConsoleSession | None:
        """The live session of a cookie value (None: unknown or expired)."""
        if not token or len(token) > 100:
            return None
        async with self._store.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            row = await (await cur.execute(sql.SESSION_GET, {"id": digest(token)})).fetchone()
        return _session(row) if row is not None else None

    async def close(self, token: str) -> None:
        async with self._store.connection() as conn:
            await conn.execute(sql.SESSION_CLOSE, {"id": digest(token)})


def _session(row: dict[str, object]) -> ConsoleSession:
    return ConsoleSession(
        tenant_id=row["tenant_id"],  # type: ignore[arg-type]
        key_id=row["key_id"],  # type: ignore[arg-type]
        operator_sha256=row["operator_sha256"],  # type: ignore[arg-type]
        actor=str(row["actor"]), csrf_token=str(row["csrf_token"]),
        created_at=row["created_at"],  # type: ignore[arg-type]
        expires_at=row["expires_at"],  # type: ignore[arg-type]
    )
