"""Who is asking: the tenant, actor and scopes a request is judged as (pure data)."""

from __future__ import annotations

from dataclasses import dataclass

from shared.security.scopes import OPERATOR_SCOPES


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller.

    ``tenant_id`` None is an operator (Temporal access, the CLI): any tenant, the operator scopes.
    A tenant API key pins ``tenant_id`` and carries the key's scopes.
    """

    actor: str
    scopes: tuple[str, ...]
    tenant_id: str | None = None
    key_id: str | None = None

    @classmethod
    def operator(cls, actor: str = "operator", scopes: tuple[str, ...] = OPERATOR_SCOPES) -> Principal:
        return cls(actor=actor, scopes=tuple(scopes))

    @property
    def is_operator(self) -> bool:
        return self.tenant_id is None

    def may_act_for(self, tenant_id: str) -> bool:
        return self.tenant_id is None or self.tenant_id == tenant_id
