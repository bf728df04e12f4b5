"""Tenants and their API keys. A key is shown once; only the SHA-256 of its secret is stored."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from shared.errors import ApiKeyNotFound, TenantExists, Unauthenticated, UnknownTenant
from shared.ids import check_tenant_id
from shared.security.principal import Principal
from shared.security.scopes import check_scope
from shared.store import direct, fast
from shared.store.tables import ApiKeyRow, TenantRow

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

    @classmethod
    def from_row(cls, row: ApiKeyRow) -> ApiKey:
        return cls(row.key_id, row.tenant_id, tuple(row.scopes), row.description, row.created_at, row.revoked_at)


@dataclass(frozen=True, slots=True)
class IssuedKey:
    key: ApiKey
    #: the whole presented credential (``jfk_<id>_<secret>``); never stored, shown once
    secret: str


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class TenantStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._session = async_sessionmaker(engine, expire_on_commit=False)
        #: tenants seen to exist (a bounded set; cleared when full)
        self._known: set[str] = set()

    async def create_tenant(self, tenant_id: str, name: str = "") -> Tenant:
        check_tenant_id(tenant_id)
        stmt = (insert(TenantRow).values(tenant_id=tenant_id, name=name or tenant_id)
                .on_conflict_do_nothing(index_elements=[TenantRow.tenant_id]).returning(TenantRow))
        async with self._session.begin() as session:
            row = (await session.execute(stmt)).scalar_one_or_none()
        if row is None:
            raise TenantExists(tenant_id)
        return Tenant(row.tenant_id, row.name, row.created_at)

    async def get_tenant(self, tenant_id: str) -> Tenant:
        async with self._session() as session:
            row = await session.get(TenantRow, tenant_id)
        if row is None:
            raise UnknownTenant(tenant_id)
        return Tenant(row.tenant_id, row.name, row.created_at)

    async def require(self, tenant_id: str) -> None:
        """:class:`UnknownTenant` unless the tenant exists: one primary-key lookup, and none at all for a
        tenant this store has seen before (tenants are never deleted)."""
        if tenant_id in self._known:
            return
        async with fast.connection(self._engine) as conn:  # the gate's hot path: a raw connection
            found = await (await conn.execute(direct.TENANT_EXISTS, {"t": tenant_id})).fetchone()
        if found is None:
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
        async with self._session() as session:
            rows = (await session.execute(select(TenantRow).order_by(TenantRow.tenant_id))).scalars()
            return [Tenant(r.tenant_id, r.name, r.created_at) for r in rows]

    async def create_key(self, tenant_id: str, scopes: Sequence[str], description: str = "") -> IssuedKey:
        await self.get_tenant(tenant_id)
        scopes = tuple(sorted({check_scope(s) for s in scopes}))
        key_id = secrets.token_hex(6)
        secret = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        row = ApiKeyRow(key_id=key_id, tenant_id=tenant_id, secret_sha256=_digest(secret), scopes=list(scopes),
                        description=description)
        async with self._session.begin() as session:
            session.add(row)
            await session.flush()
            await session.refresh(row)
        return IssuedKey(ApiKey.from_row(row), secret)

    async def list_keys(self, tenant_id: str | None = None) -> Sequence[ApiKey]:
        stmt = select(ApiKeyRow).order_by(ApiKeyRow.created_at)
        if tenant_id is not None:
            stmt = stmt.where(ApiKeyRow.tenant_id == tenant_id)
        async with self._session() as session:
            return [ApiKey.from_row(r) for r in (await session.execute(stmt)).scalars()]

    async def revoke_key(self, key_id: str) -> ApiKey:
        stmt = (update(ApiKeyRow).where(ApiKeyRow.key_id == key_id)
                .values(revoked_at=func.coalesce(ApiKeyRow.revoked_at, func.now())).returning(ApiKeyRow))
        async with self._session.begin() as session:
            row = (await session.execute(stmt)).scalar_one_or_none()
        if row is None:
            raise ApiKeyNotFound(key_id)
        return ApiKey.from_row(row)

    async def authenticate(self, presented: str) -> Principal:
        """The principal of a presented key; :class:`Unauthenticated` for anything else (same message)."""
        match = _KEY.fullmatch(presented.strip())
        if match is None:
            raise Unauthenticated()
        async with self._session() as session:
            row = await session.get(ApiKeyRow, match[1])
        if row is None or row.revoked_at is not None or not hmac.compare_digest(row.secret_sha256,
                                                                                _digest(presented.strip())):
            raise Unauthenticated()
        return _principal(row)

    async def principal_of_key(self, key_id: str) -> Principal:
        """The principal of a key authenticated earlier (a console session), with the key's current scopes.

        :class:`Unauthenticated` once the key is revoked or gone.
        """
        async with self._session() as session:
            row = await session.get(ApiKeyRow, key_id)
        if row is None or row.revoked_at is not None:
            raise Unauthenticated()
        return _principal(row)


def _principal(row: ApiKeyRow) -> Principal:
    return Principal(actor=f"key:{row.key_id}", scopes=tuple(row.scopes), tenant_id=row.tenant_id, key_id=row.key_id)
