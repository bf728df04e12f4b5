"""The integration examples in examples/integrations run as documented: with the SDK's HTTP client only,
against the API (in process) and a real worker, with a key holding the scopes each example's docstring names."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from examples.integrations import aias_agent_completed, keys_rotation, settler_contract_signed
from jobforge.client import JobForgeClient
from jobforge.errors import Unauthenticated
from jobforge.ids import api_key_id
from jobforge.models import RunStatus, Verdict
from shared.flags import Flag
from workers.api import create_app
from workers.runtime import Runtime

pytestmark = pytest.mark.integration

Connect = Callable[[str, list[str]], Awaitable[tuple[JobForgeClient, str]]]


@pytest.fixture
async def connect(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Connect]:
    """``connect(tenant, scopes)``: a new tenant with a key of those scopes, and an SDK client with that key."""
    for flag in (Flag.EVENTS, Flag.TRIGGERS, Flag.AUTOPILOT_JOBS, Flag.ACTION_JOBS):
        monkeypatch.setenv(flag.value, "1")
    transport = httpx.ASGITransport(app=create_app(runtime.settings, runtime))
    clients: list[JobForgeClient] = []

    async def make(tenant: str, scopes: list[str]) -> tuple[JobForgeClient, str]:
        await runtime.gate.tenants.create_tenant(tenant)
        issued = await runtime.gate.tenants.create_key(tenant, scopes)
        clients.append(JobForgeClient("http://api", issued.secret, transport=transport))
        return clients[-1], issued.secret

    yield make
    for client in clients:
        await client.aclose()


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


async def test_settler_example(connect: Connect, worker: None) -> None:
    """Settler's contract.signed event fires the trigger it created and the job runs to success."""
    tenant = unique("settler")
    client, _ = await connect(tenant, ["triggers:write", "jobs:request", "events:write", "events:read", "runs:read"])
    result = await settler_contract_signed.main(client, tenant)
    assert [f.verdict for f in result.fires] == [Verdict.FIRE]
    run_workflow_id = result.fires[0].run_workflow_id
    assert run_workflow_id is not None
    assert (await client.get_run(run_workflow_id)).status is RunStatus.SUCCEEDED


async def test_aias_example(connect: Connect, runtime: Runtime, worker: None) -> None:
    """AIAS's agent.execution.completed event meets a strict trigger: a dry-run record, no run."""
    tenant = unique("aias")
    client, _ = await connect(tenant, ["triggers:*", "jobs:request", "events:*"])
    records = await aias_agent_completed.main(client, tenant)
    assert len(records) == 1 and records[0].verdict is Verdict.DRY_RUN
    assert await runtime.client().list_runs(tenant) == []


async def test_keys_example(connect: Connect, runtime: Runtime, worker: None) -> None:
    """The Keys example rotates its own key through a policy-token-gated action job: the sealed secret it opens
    is a working key of the tenant with the old key's scopes, and the old key is refused after the grace."""
    tenant = unique("keys")
    client, old = await connect(tenant, ["tokens:issue", "keys:rotate", "runs:read"])
    record, secret = await keys_rotation.main(client, tenant, api_key_id(old), grace_seconds=10)
    assert record.status is RunStatus.SUCCEEDED
    assert record.summary["old_key_id"] == api_key_id(old) != record.summary["new_key_id"] == api_key_id(secret)
    principal = await runtime.gate.tenants.authenticate(secret)
    assert principal.tenant_id == tenant and set(principal.scopes) == {"tokens:issue", "keys:rotate", "runs:read"}
    with pytest.raises(Unauthenticated):
        await client.get_run(record.run_id)
