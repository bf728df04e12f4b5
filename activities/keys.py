"""Activities of ``autopilot.keys.rotation``: make the successor key (sealed), revoke the old one."""

from __future__ import annotations

import structlog
from pydantic import BaseModel, ConfigDict
from temporalio import activity

from jobforge.errors import ApiKeyNotFound, InvalidRequest
from shared.store.tenants import TenantStore

log = structlog.get_logger("jobforge.activities.keys")


class SuccessorInput(BaseModel):
    model_config = ConfigDict(frozen=True)

    tenant_id: str
    key_id: str
    recipient_public_key: str
    #: marks the successor made by this run, so a retried activity replaces (never duplicates) it
    marker: str


class SuccessorResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    new_key_id: str
    scopes: list[str]
    sealed_secret: str


class RevokeInput(BaseModel):
    model_config = ConfigDict(frozen=True)

    tenant_id: str
    key_id: str


class KeyActivities:
    def __init__(self, tenants: TenantStore) -> None:
        self.tenants = tenants

    @activity.defn(name="keys.create_successor")
    async def create_successor(self, req: SuccessorInput) -> SuccessorResult:
        """A new key with the old key's scopes; its secret leaves this activity only sealed."""
        # cryptography loads with the first rotation, not in every process that reads this module's models
        # (the HTTP API reads SuccessorResult)
        from jobforge.sealed import seal

        keys = {k.key_id: k for k in await self.tenants.list_keys(req.tenant_id)}
        old = keys.get(req.key_id)
        if old is None:
            raise ApiKeyNotFound(req.key_id)
        if old.revoked_at is not None:
            raise InvalidRequest(f"key {req.key_id} is revoked already; there is nothing to rotate")
        for key in keys.values():  # a previous attempt of this run made one whose secret is lost: retire it
            if key.description == req.marker and key.revoked_at is None:
                await self.tenants.revoke_key(key.key_id)
        issued = await self.tenants.create_key(req.tenant_id, old.scopes, description=req.marker)
        log.info("key_successor_created", tenant_id=req.tenant_id, old_key=req.key_id, new_key=issued.key.key_id)
        return SuccessorResult(new_key_id=issued.key.key_id, scopes=list(issued.key.scopes),
                               sealed_secret=seal(issued.secret.encode(), req.recipient_public_key))

    @activity.defn(name="keys.revoke")
    async def revoke(self, req: RevokeInput) -> bool:
        """Revoke the old key after the grace period (idempotent)."""
        key = await self.tenants.revoke_key(req.key_id)
        if key.tenant_id != req.tenant_id:
            raise InvalidRequest("the key belongs to another tenant")
        log.info("key_revoked", tenant_id=req.tenant_id, key=req.key_id)
        return key.revoked_at is not None
