"""Tenants and their API keys. A key is shown once; only the SHA-256 of its secret is stored."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from jobforge.errors import ApiKeyNotFound, TenantExists, Unauthenticated, UnknownTenant
from jobforge.ids import check_tenant_id
from shared.security.principal import Principal
from shared.security.scopes import check_scope
from shared.store import direct
from shared.store import statements as sql
from shared.store.columns import fit

if TYPE_CHECKING:
    from shared.store.store import Store

KEY_PREFIX = "jfk_"
_KNOWN_MAX = 10_000
_KEY = re.compile(r"jfk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")


@dataclass(frozen=True, slots=True)
class Tenant:
    tenant_id: str
    name: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ApiKey:
    key_id: str
    tenant_id: str
    scopes: tuple[str, ...]
    description: str
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class IssuedKey:
    key: ApiKey
    #: the whole presented credential (``jfk_<id>_<secret>``); never stored, shown once
    secret: str


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class TenantStore:
    """Tenants and API keys (:attr:`shared.store.Store.tenants`)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        #: tenants seen to exist (a bounded set; cleared when full)
        self._known: set[str] = set()

    async def _one(self, statement: str, params: dict[str, object]) -> dict[str, Any] | None:
        async with self._store.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            return await (await cur.execute(statement, params)).fetchone()

    async def _all(self, statement: str, params: dict[str, object] | None = None) -> list[dict[str, Any]]:
        async with self._store.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            return await (await cur.execute(statement, params)).fetchall()

    async def create_tenant(self, tenant_id: str, name: str = "") -> Tenant:
        check_tenant_id(tenant_id)
        row = await self._one(sql.TENANT_CREATE, fit("tenants", {"tenant_id": tenant_id, "name": name or tenant_id})
                              | {"t": tenant_id})
        if row is None:
            raise TenantExists(tenant_id)
        return Tenant(row["tenant_id"], row["name"], row["created_at"])

    async def get_tenant(self, tenant_id: str) -> Tenant:
        row = await self._one(sql.TENANT_GET, {"t": tenant_id})
        if row is None:
            raise UnknownTenant(tenant_id)
        return Tenant(row["tenant_id"], row["name"], row["created_at"])

    async def require(self, tenant_id: str) -> None:
        """:class:`UnknownTenant` unless the tenant exists: one primary-key lookup, and none at all for a
        tenant this store has seen before (tenants are never deleted)."""
        if tenant_id in self._known:
            return
        async with self._store.connection() as conn:  # the gate's hot path
            found = await direct.tenant_exists(conn, tenant_id)
        if not found:
            raise UnknownTenant(tenant_id)
        if len(self._known) >= _KNOWN_MAX:
            self._known.clear()
        self._known.add(tenant_id)

    async def ensure_tenant(self, tenant_id: str, name: str = "") -> bool:
        """Create the tenant unless it exists; whether it was created."""
        try:
            await self.create_tenant(tenant_id, name)
        except TenantExists:
            return False
        return True

    async def list_tenants(self) -> Sequence[Tenant]:
        return [Tenant(r["tenant_id"], r["name"], r["created_at"]) for r in await self._all(sql.TENANTS)]

    async def create_key(self, tenant_id: str, scopes: Sequence[str], description: str = "") -> IssuedKey:
        await self.get_tenant(tenant_id)
        scopes = tuple(sorted({check_scope(s) for s in scopes}))
        key_id = secrets.token_hex(6)
        secret = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        values = fit("api_keys", {"key_id": key_id, "tenant_id": tenant_id, "secret_sha256": _digest(secret),
                                  "description": description})
        row = await self._one(sql.API_KEY_CREATE, {"key_id": values["key_id"], "t": values["tenant_id"],
                                                   "sha": values["secret_sha256"], "scopes": Jsonb(list(scopes)),
                                                   "description": values["description"]})
        assert row is not None
        return IssuedKey(_key(row), secret)

    async def list_keys(self, tenant_id: str | None = None) -> Sequence[ApiKey]:
        rows = await (self._all(sql.API_KEYS) if tenant_id is None else self._all(sql.API_KEYS_OF_TENANT,
                                                                                  {"t": tenant_id}))
        return [_key(row) for row in rows]

    async def revoke_key(self, key_id: str) -> ApiKey:
        row = await self._one(sql.API_KEY_REVOKE, {"key_id": key_id})
        if row is None:
            raise ApiKeyNotFound(key_id)
        return _key(row)

    async def authenticate(self, presented: str) -> Principal:
        """The principal of a presented key; :class:`Unauthenticated` for anything else (same message).

        Every call reads the key's row (one primary-key read), so a revocation by any process takes
        effect on the next request.
        """
        key = presented.strip()
        match = _KEY.fullmatch(key)
        if match is None:
            raise Unauthenticated()
        row = await self._one(sql.API_KEY_GET, {"key_id": match[1]})
        if row is None or row["revoked_at"] is not None or not hmac.compare_digest(row["secret_sha256"],
                                                                                   _digest(key)):
            raise Unauthenticated()
        return _principal(row)

    async def principal_of_key(self, key_id: str) -> Principal:
        """The principal of a key authenticated earlier (a console session), with the key's current scopes.

        :class:`Unauthenticated` once the key is revoked or gone.
        """
        row = await self._one(sql.API_KEY_GET, {"key_id": key_id})
        if row is None or row["revoked_at"] is not None:
            raise Unauthenticated()
        return _principal(row)


def _key(row: Mapping[str, Any]) -> ApiKey:
    return ApiKey(row["key_id"], row["tenant_id"], tuple(row["scopes"]), row["description"], row["created_at"],
                  row["revoked_at"])


def _principal(row: Mapping[str, Any]) -> Principal:
    return Principal(actor=f"key:{row['key_id']}", scopes=tuple(row["scopes"]), tenant_id=row["tenant_id"],
                     key_id=row["key_id"])
