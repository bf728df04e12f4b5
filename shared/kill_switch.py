"""The fleet's kill switch: a flag's store override, changed and audited as one operation.

``jobforge flags set/unset`` and the console's Flags page both change overrides here, so each change is
stored with who made it and why, and written to the **fleet audit chain** (:data:`FLEET_CHAIN`), a chain
of operator actions that concern every tenant. It is written when audit logging is on before or after
the change (so turning audit logging itself off is still recorded). Flag values are read fresh, not
through a reader's cache; the environment part of a value is this process's.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.flags import Flag, FlagReader, FlagValue
from shared.security.audit import AuditFact, Decision
from shared.security.redaction import redact_text
from shared.store import Store
from shared.store.audit import AuditLog

#: the audit chain of fleet-wide operator actions; not a tenant id (tenant ids start with a letter or digit)
FLEET_CHAIN = "_fleet"


@dataclass(frozen=True, slots=True)
class FlagChange:
    flag: Flag
    before: FlagValue
    after: FlagValue
    #: written to the fleet audit chain
    audited: bool
    #: the override existed (for an unset: whether there was one to remove)
    had_override: bool


async def change_override(store: Store, audit: AuditLog, flag: Flag, enabled: bool | None, *, actor: str,
                          reason: str = "") -> FlagChange:
    """Set the fleet-wide override of ``flag`` (``enabled`` None: remove it) and audit the change."""
    reader = FlagReader(store.flag_overrides, 0)
    before = {value.flag: value for value in await reader.values()}
    if enabled is None:
        had = await store.delete_flag_override(flag)
    else:
        had = flag in await store.flag_overrides()
        await store.set_flag_override(flag, enabled, actor, reason)
    after = {value.flag: value for value in await reader.values()}
    audited = before[Flag.AUDIT_LOGGING].enabled or after[Flag.AUDIT_LOGGING].enabled
    if audited:
        state = "unset" if enabled is None else ("on" if enabled else "off")
        await audit.append(AuditFact(
            tenant_id=FLEET_CHAIN, actor=actor, action="flags.unset" if enabled is None else "flags.set",
            resource=flag.value, decision=Decision.ALLOW, reason=redact_text(reason) or f"{flag.value} {state}",
            details={"before": {"enabled": before[flag].enabled, "source": before[flag].source.value},
                     "after": {"enabled": after[flag].enabled, "source": after[flag].source.value},
                     "had_override": had}))
    return FlagChange(flag, before[flag], after[flag], audited, had)
