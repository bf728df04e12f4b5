"""What a flood of refused requests costs the gate: revocation still takes effect at once, and
rate-limit refusals are audited as counted entries on an intact chain."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from jobforge.errors import RateLimited, Unauthenticated
from shared import gate as gate_module
from shared.flags import Flag, FlagReader
from shared.gate import EVENTS_SUBMIT, JOBS_REQUEST, RATE_DENY_WINDOW_SECONDS, Gate
from shared.settings import Settings
from shared.store import Store
from shared.templates import load_registry

pytestmark = pytest.mark.integration


@pytest.fixture
async def store(pg_url: str) -> AsyncIterator[Store]:
    store = Store.from_url(pg_url)
    yield store
    await store.close()


def make_gate(store: Store, tmp_path: Path, per_minute: int) -> Gate:
    settings = Settings(home=tmp_path / "home", rate_limit_per_minute=per_minute)
    env = {flag.value: "1" for flag in (Flag.RATE_LIMITING, Flag.AUDIT_LOGGING)}
    return Gate(store, settings, FlagReader(None, env=env), load_registry(settings))


async def new_tenant(store: Store) -> str:
    tenant = f"flood-{uuid.uuid4().hex[:8]}"
    await store.tenants.create_tenant(tenant)
    return tenant


async def test_a_key_revoked_by_another_process_stops_working_at_once(pg_url: str, store: Store) -> None:
    """Another process's revocation takes effect on this store's next authentication; a wrong secret for
    a key id just verified is refused."""
    tenant = await new_tenant(store)
    issued = await store.tenants.create_key(tenant, ["events:write"])
    tenants = store.tenants
    assert (await tenants.authenticate(issued.secret)).tenant_id == tenant
    forged = issued.secret[:-4] + ("AAAA" if not issued.secret.endswith("AAAA") else "BBBB")
    with pytest.raises(Unauthenticated):
        await tenants.authenticate(forged)
    other = Store.from_url(pg_url)  # another process
    try:
        await other.tenants.revoke_key(issued.key.key_id)
    finally:
        await other.close()
    with pytest.raises(Unauthenticated):
        await tenants.authenticate(issued.secret)


async def refuse(gate: Gate, tenant: str, action: str = JOBS_REQUEST) -> None:
    caller = (await gate.tenants.authenticate(KEYS[tenant]))
    with pytest.raises(RateLimited):
        await gate.charge_request(caller, tenant, action)


KEYS: dict[str, str] = {}


async def flooded(store: Store, tmp_path: Path) -> tuple[Gate, str]:
    gate = make_gate(store, tmp_path, per_minute=1)
    tenant = await new_tenant(store)
    KEYS[tenant] = (await store.tenants.create_key(tenant, ["*:*"])).secret
    caller = await gate.tenants.authenticate(KEYS[tenant])
    await gate.charge_request(caller, tenant, JOBS_REQUEST)  # the budget of one is spent
    return gate, tenant


async def deny_entries(store: Store, tenant: str) -> list[dict[str, object]]:
    records = await store.audit.list(tenant, limit=1000)
    return [r.details for r in records if r.decision == "deny"]


@pytest.mark.parametrize("refusals", [1, 2, 37])
async def test_a_flood_of_rate_limit_refusals_is_audited_as_counted_entries(store: Store, tmp_path: Path,
                                                                            refusals: int) -> None:
    """The first refusal is written at once; the rest of the window is held and written as one entry
    counting them; every refusal is counted exactly once and the chain verifies."""
    gate, tenant = await flooded(store, tmp_path)
    now = [50.0]
    gate.clock = lambda: now[0]
    for _ in range(refusals):
        await refuse(gate, tenant)
    assert await deny_entries(store, tenant) == [{"error_code": "rate_limited", "refusals": 1}]
    await gate.flush_denials()
    entries = await deny_entries(store, tenant)
    assert sum(int(str(e["refusals"])) for e in entries) == refusals
    assert len(entries) == (1 if refusals == 1 else 2)
    verdict = await store.audit.verify(tenant)
    assert verdict.ok and verdict.entries == len(entries)


async def test_the_refusal_after_the_window_counts_the_held_ones(store: Store, tmp_path: Path) -> None:
    """Refusals held in a window are counted by the entry of the first refusal after it; per action."""
    gate, tenant = await flooded(store, tmp_path)
    now = [50.0]
    gate.clock = lambda: now[0]
    for _ in range(5):
        await refuse(gate, tenant)  # 1 written, 4 held
    await refuse(gate, tenant, EVENTS_SUBMIT)  # another action: its own first entry
    now[0] += RATE_DENY_WINDOW_SECONDS
    await refuse(gate, tenant)  # written: itself and the 4 held
    entries = await deny_entries(store, tenant)  # newest first
    assert [e["refusals"] for e in entries] == [5, 1, 1]
    await gate.flush_denials()
    assert len(await deny_entries(store, tenant)) == 3  # nothing was left held
    assert (await store.audit.verify(tenant)).ok


async def test_held_refusals_are_written_when_the_window_ends(store: Store, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a later refusal or a flush, the window's timer writes the held count."""
    monkeypatch.setattr(gate_module, "RATE_DENY_WINDOW_SECONDS", 0.2)
    gate, tenant = await flooded(store, tmp_path)
    for _ in range(3):
        await refuse(gate, tenant)
    for _ in range(100):
        entries = await deny_entries(store, tenant)
        if len(entries) == 2:
            break
        await asyncio.sleep(0.05)  # polling the store for the timer's entry (a condition, not a delay)
    assert [e["refusals"] for e in entries] == [2, 1]
    assert (await store.audit.verify(tenant)).ok
