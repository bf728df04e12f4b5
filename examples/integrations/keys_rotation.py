"""Keys: rotate an API key with `autopilot.keys.rotation`, an action job that needs a policy token.

Only the SDK with its `keys` extra is needed (`pip install 'jobforge[keys]'`): the new secret is sealed to a
keypair made here (`jobforge.sealed`), so it never enters workflow history, logs or manifests in the clear,
and is opened here. The key rotated is the one in JOBFORGE_API_KEY (or --key-id, another of the tenant's);
it needs the scopes `tokens:issue`, `keys:rotate` and `runs:read`, and the new key gets the rotated key's.
The old key keeps working for the grace period, then is revoked: an app stores the new key before then.
The stack needs JOBFORGE_AUTOPILOT_JOBS_ENABLED and JOBFORGE_ACTION_JOBS_ENABLED on.

    jobforge keys create --tenant keys --scopes tokens:issue,keys:rotate,runs:read --json
    export JOBFORGE_API_URL=http://127.0.0.1:8000 JOBFORGE_API_KEY=jfk_...   # that key
    python -m examples.integrations.keys_rotation [--grace SECONDS]
"""

from __future__ import annotations

import argparse
import asyncio
import os

from examples.integrations._common import api_client
from jobforge import JobForgeClient, RunRecord
from jobforge.ids import api_key_id
from jobforge.sealed import new_keypair, open_sealed_secret

TENANT = "keys"
TEMPLATE = "autopilot.keys.rotation"


async def main(client: JobForgeClient, tenant: str, key_id: str, grace_seconds: int = 10,
               within: float = 120.0) -> tuple[RunRecord, str]:
    """Rotate ``key_id``; the finished run's record (read with the new key) and the new key's secret."""
    private, public = new_keypair()
    inputs = {"key_id": key_id, "grace_seconds": grace_seconds, "recipient_public_key": public}
    token = await client.issue_policy_token(TEMPLATE, inputs, ttl_seconds=300)
    handle = await client.request_job(tenant, TEMPLATE, inputs, actor="keys-app", policy_token=token["token"])
    print(f"rotating {key_id}: run {handle.run_id} (grace {grace_seconds}s, a durable timer)")
    sealed = await client.wait_sealed_secret(handle.run_id, within=within)  # there from the grace period on
    secret = open_sealed_secret(sealed.sealed_secret, private)
    async with client.with_api_key(secret) as renewed:  # the old key is revoked after the grace period
        record = await renewed.wait_run(handle.run_id, within=within)
    print(f"new key {sealed.new_key_id} ({', '.join(sealed.scopes)}) read the run with it: {record.status.value}; "
          f"old key {record.summary.get('old_key_id')} revoked after {record.summary.get('grace_seconds')}s")
    return record, secret


async def _cli(tenant: str, key_id: str | None, grace_seconds: int) -> None:
    async with api_client() as client:
        await main(client, tenant, key_id or api_key_id(os.environ["JOBFORGE_API_KEY"]), grace_seconds)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenant", default=TENANT)
    parser.add_argument("--key-id", help="the key to rotate (default: the one in JOBFORGE_API_KEY)")
    parser.add_argument("--grace", type=int, default=10, help="seconds the old key keeps working")
    args = parser.parse_args()
    asyncio.run(_cli(args.tenant, args.key_id, args.grace))
