"""Single use of policy tokens and admission receipts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from psycopg.rows import dict_row

from jobforge.errors import PolicyTokenInvalid, PolicyTokenReplayed, TokenInvalid
from shared.store import statements as sql
from shared.store.columns import fit

if TYPE_CHECKING:
    from shared.store.store import Store


@dataclass(frozen=True, slots=True)
class PolicyGrant:
    jti: str
    tenant_id: str
    template_key: str
    inputs_hash: str


class GrantStore:
    """Policy tokens and receipts, each usable once (:attr:`shared.store.Store.grants`)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def record_policy_token(self, *, jti: str, token_ref: str, tenant_id: str, template_key: str,
                                  inputs_hash: str, actor: str, expires_at: int) -> None:
        row = fit("policy_tokens", {"jti": jti, "token_ref": token_ref, "tenant_id": tenant_id,
                                    "template_key": template_key, "inputs_hash": inputs_hash, "actor": actor})
        async with self._store.connection() as conn:
            await conn.execute(sql.POLICY_TOKEN_RECORD, {
                "jti": row["jti"], "ref": row["token_ref"], "tenant": row["tenant_id"],
                "template": row["template_key"], "hash": row["inputs_hash"], "actor": row["actor"],
                "exp": datetime.fromtimestamp(expires_at, UTC)})

    async def consume_policy_token(self, token_ref: str, *, tenant_id: str, template_key: str, inputs_hash: str,
                                   used_by: str) -> PolicyGrant:
        """Mark the token used by ``used_by``; a second use by anyone else is a replay.

        The same ``used_by`` consuming again (a retried activity) gets the grant again.
        """
        params = {"ref": token_ref, "by": used_by, "tenant": tenant_id, "template": template_key,
                  "hash": inputs_hash}
        async with self._store.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            used = await (await cur.execute(sql.POLICY_TOKEN_CONSUME, params)).fetchone()
            if used is not None:
                return PolicyGrant(used["jti"], tenant_id, template_key, inputs_hash)
            row = await (await cur.execute(sql.POLICY_TOKEN_LOOK, params)).fetchone()
        if row is None:
            raise PolicyTokenInvalid(reason="unknown token")
        if (row["tenant_id"], row["template_key"], row["inputs_hash"]) != (tenant_id, template_key, inputs_hash):
            raise PolicyTokenInvalid(reason="the token is bound to another tenant, template or inputs")
        if row["used_at"] is not None:
            if row["used_by"] == used_by:
                return PolicyGrant(row["jti"], tenant_id, template_key, inputs_hash)
            raise PolicyTokenReplayed()
        if row["expired"]:
            raise PolicyTokenInvalid(reason="expired")
        raise PolicyTokenInvalid(reason="not usable")

    async def consume_receipt(self, jti: str, *, workflow_id: str, run_id: str, expires_at: int) -> None:
        """Record that run ``run_id`` used receipt ``jti``; another run using it is refused."""
        row = fit("receipt_uses", {"jti": jti, "workflow_id": workflow_id, "run_id": run_id})
        async with self._store.connection() as conn:  # one atomic upsert
            cur = await conn.execute(sql.RECEIPT_CONSUME, {
                "jti": row["jti"], "wf": row["workflow_id"], "run": row["run_id"],
                "exp": datetime.fromtimestamp(expires_at, UTC)})
            used = await cur.fetchone()
        assert used is not None
        if used[0] != run_id:
            raise TokenInvalid(reason="receipt already used by another run")
