"""Keys: rotate an API key with `autopilot.keys.rotation`, an action job that needs a policy token.

The new secret is sealed to a keypair made here; it never enters workflow history, logs or manifests.

    .venv/bin/python -m examples.integrations.keys_rotation
"""

from __future__ import annotations

import contextlib

from examples.integrations._operator import run_example
from jobforge.errors import TenantExists
from jobforge.sealed import new_keypair, open_sealed
from shared.flags import Flag
from shared.keys_rotation import KeyRotationResult
from shared.security.principal import Principal
from workers.runtime import Runtime

TENANT = "keys"
TEMPLATE = "autopilot.keys.rotation"
FLAGS = (Flag.AUTOPILOT_JOBS, Flag.ACTION_JOBS)


async def main(rt: Runtime, tenant: str = TENANT, grace_seconds: int = 2) -> KeyRotationResult:
    tenants = rt.gate.tenants
    with contextlib.suppress(TenantExists):
        await tenants.create_tenant(tenant)
    old = await tenants.create_key(tenant, ["jobs:*", "events:write"], description="rotated by the example")
    private, public = new_keypair()
    inputs = {"key_id": old.key.key_id, "grace_seconds": grace_seconds, "recipient_public_key": public}
    token = await rt.gate.issue_policy_token(Principal.operator("keys-app"), tenant, TEMPLATE, inputs, ttl=300)
    client = rt.client()
    handle = await client.request_job(tenant, TEMPLATE, inputs, actor="keys-app", policy_token=token.token)
    print(f"rotating {old.key.key_id}: run {handle.workflow_id} (grace {grace_seconds}s, a durable timer)")
    result = await client.result(handle)
    assert isinstance(result, KeyRotationResult)
    secret = open_sealed(result.sealed_secret, private).decode()
    principal = await tenants.authenticate(secret)
    print(f"new key {result.new_key_id} works for {principal.tenant_id} with {', '.join(principal.scopes)}; "
          f"old key revoked: {result.old_key_revoked}")
    return result


if __name__ == "__main__":
    run_example(main, FLAGS)
