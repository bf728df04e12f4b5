"""`autopilot.keys.rotation`: an action job with a policy token, a durable grace timer, no secret in history."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from activities.keys import SuccessorResult
from jobforge.errors import PolicyTokenRequired, Unauthenticated
from jobforge.sealed import new_keypair, open_sealed
from shared.flags import Flag
from shared.keys_rotation import KeyRotationResult
from shared.security.principal import Principal
from workers.runtime import Runtime

pytestmark = pytest.mark.integration

ROTATION = "autopilot.keys.rotation"


@pytest.fixture
def action_on(monkeypatch: pytest.MonkeyPatch) -> None:
    for flag in (Flag.AUTOPILOT_JOBS, Flag.ACTION_JOBS, Flag.AUDIT_LOGGING):
        monkeypatch.setenv(flag.value, "1")


async def test_rotation_delivers_sealed_key_and_revokes_after_grace(runtime: Runtime, worker: None,
                                                                    action_on: None) -> None:
    """The new key works, the old one is revoked after the grace timer, and no secret is in the history."""
    tenants = runtime.gate.tenants
    tenant = f"keys{uuid.uuid4().hex[:8]}"
    await tenants.create_tenant(tenant)
    old = await tenants.create_key(tenant, ["jobs:*", "events:write"])
    private, public = new_keypair()
    inputs = {"key_id": old.key.key_id, "grace_seconds": 1, "recipient_public_key": public}
    client = runtime.client()
    with pytest.raises(PolicyTokenRequired):
        await client.request_job(tenant, ROTATION, inputs)
    token = await runtime.gate.issue_policy_token(Principal.operator("ops"), tenant, ROTATION, inputs)
    handle = await client.request_job(tenant, ROTATION, inputs, policy_token=token.token)
    result = await client.result(handle)
    assert isinstance(result, KeyRotationResult) and result.old_key_revoked
    secret = open_sealed(result.sealed_secret, private).decode()
    principal = await tenants.authenticate(secret)
    assert principal.tenant_id == tenant and set(principal.scopes) == {"jobs:*", "events:write"}
    with pytest.raises(Unauthenticated):
        await tenants.authenticate(old.secret)
    assert runtime.temporal is not None
    history = (await runtime.temporal.get_workflow_handle(handle.workflow_id).fetch_history()).to_json()
    assert secret not in history and token.token not in history and old.secret not in history
    # the token was single-use
    with pytest.raises(Exception, match=r"(?i)used|replay"):
        await client.request_job(tenant, ROTATION, inputs, policy_token=token.token)


async def test_the_new_key_is_there_during_the_grace_period(runtime: Runtime, worker: None, action_on: None) -> None:
    """The `successor` query hands out the sealed new key while the run waits out its grace period, so the
    holder of the private key switches keys before the old one goes."""
    tenants = runtime.gate.tenants
    tenant = f"keys{uuid.uuid4().hex[:8]}"
    await tenants.create_tenant(tenant)
    old = await tenants.create_key(tenant, ["jobs:*", "runs:read"])
    private, public = new_keypair()
    inputs = {"key_id": old.key.key_id, "grace_seconds": 3600, "recipient_public_key": public}
    token = await runtime.gate.issue_policy_token(Principal.operator("ops"), tenant, ROTATION, inputs)
    handle = await runtime.client().request_job(tenant, ROTATION, inputs, policy_token=token.token)
    assert runtime.temporal is not None
    workflow = runtime.temporal.get_workflow_handle(handle.workflow_id, run_id=handle.run_id)
    successor = None
    for _ in range(200):
        successor = await workflow.query("successor", result_type=SuccessorResult | None)  # type: ignore[arg-type]
        if successor is not None:
            break
        await asyncio.sleep(0.05)
    assert isinstance(successor, SuccessorResult)
    assert await workflow.query("phase") == "grace period"
    principal = await tenants.authenticate(open_sealed(successor.sealed_secret, private).decode())
    assert principal.key_id == successor.new_key_id and set(principal.scopes) == {"jobs:*", "runs:read"}
    assert (await tenants.authenticate(old.secret)).key_id == old.key.key_id  # not revoked before the grace ends
    await workflow.cancel()
