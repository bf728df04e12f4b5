"""Single use of policy tokens and admission receipts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.errors import PolicyTokenInvalid, PolicyTokenReplayed, TokenInvalid
from shared.store import fast

_CONSUME = text("""
UPDATE policy_tokens SET used_at = clock_timestamp(), used_by = :by
 WHERE token_ref = :ref AND used_at IS NULL AND expires_at > clock_timestamp()
   AND tenant_id = :tenant AND template_key = :template AND inputs_hash = :hash
RETURNING jti
""")
_LOOK = text("""
SELECT jti, tenant_id, template_key, inputs_hash, used_at, used_by, expires_at <= clock_timestamp() AS expired
  FROM policy_tokens WHERE token_ref = :ref
""")


@dataclass(frozen=True, slots=True)
class PolicyGrant:
    jti: str
    tenant_id: str
    template_key: str
    inputs_hash: str


class GrantStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def record_policy_token(self, *, jti: str, token_ref: str, tenant_id: str, template_key: str,
                                  inputs_hash: str, actor: str, expires_at: int) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(text(
                "INSERT INTO policy_tokens (jti, token_ref, tenant_id, template_key, inputs_hash, actor, expires_at, "
                "used_by) VALUES (:jti, :ref, :tenant, :template, :hash, :actor, :exp, '')"),
                {"jti": jti, "ref": token_ref, "tenant": tenant_id, "template": template_key, "hash": inputs_hash,
                 "actor": actor, "exp": datetime.fromtimestamp(expires_at, UTC)})

    async def consume_policy_token(self, token_ref: str, *, tenant_id: str, template_key: str, inputs_hash: str,
                                   used_by: str) -> PolicyGrant:
        """Mark the token used by ``used_by``; a second use by anyone else is a replay.

        The same ``used_by`` consuming again (a retried activity) gets the grant again.
        """
        params = {"ref": token_ref, "by": used_by, "tenant": tenant_id, "template": template_key,
                  "hash": inputs_hash}
        async with self.engine.begin() as conn:
            used = (await conn.execute(_CONSUME, params)).one_or_none()
            if used is not None:
                return PolicyGrant(used.jti, tenant_id, template_key, inputs_hash)
            row = (await conn.execute(_LOOK, params)).one_or_none()
        if row is None:
            raise PolicyTokenInvalid(reason="unknown token")
        if (row.tenant_id, row.template_key, row.inputs_hash) != (tenant_id, template_key, inputs_hash):
            raise PolicyTokenInvalid(reason="the token is bound to another tenant, template or inputs")
        if row.used_at is not None:
            if row.used_by == used_by:
                return PolicyGrant(row.jti, tenant_id, template_key, inputs_hash)
            raise PolicyTokenReplayed()
        if row.expired:
            raise PolicyTokenInvalid(reason="expired")
        raise PolicyTokenInvalid(reason="not usable")

    async def consume_receipt(self, jti: str, *, workflow_id: str, run_id: str, expires_at: int) -> None:
        """Record that run ``run_id`` used receipt ``jti``; another run using it is refused."""
        async with fast.connection(self.engine) as conn:  # one atomic upsert
            cur = await conn.execute(
                "INSERT INTO receipt_uses (jti, workflow_id, run_id, expires_at) "
                "VALUES (%(jti)s, %(wf)s, %(run)s, %(exp)s) "
                "ON CONFLICT (jti) DO UPDATE SET jti = excluded.jti RETURNING run_id",
                {"jti": jti, "wf": workflow_id, "run": run_id, "exp": datetime.fromtimestamp(expires_at, UTC)})
            used = await cur.fetchone()
        assert used is not None
        row_run_id = used[0]
        if row_run_id != run_id:
            raise TokenInvalid(reason="receipt already used by another run")
