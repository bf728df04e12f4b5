"""Tenants for tests: every request names a tenant that must exist (``unknown_tenant`` otherwise)."""

from __future__ import annotations

import uuid

from workers.runtime import Runtime


async def new_tenant(rt: Runtime, prefix: str = "t") -> str:
    """A tenant of the caller's own (a fresh name), created."""
    name = f"{prefix}{uuid.uuid4().hex[:10]}"
    await rt.gate.tenants.create_tenant(name)
    return name


async def ensure_tenants(rt: Runtime, *names: str) -> None:
    """Create each of ``names`` unless it exists (the test database is shared by the session's tests)."""
    for name in names:
        await rt.gate.tenants.ensure_tenant(name)
