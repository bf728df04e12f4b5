"""Settler: a `contract.signed` event fires a trigger that runs a job with values from the event.

Only the SDK is needed (`pip install jobforge`): the trigger, the event and the reads go to `jobforge-api` with
the tenant's key, which needs the scopes `triggers:write` and `jobs:request` (the trigger's template's),
`events:write`, `events:read` and `runs:read`. The stack needs JOBFORGE_EVENTS_ENABLED, JOBFORGE_TRIGGERS_ENABLED
and JOBFORGE_AUTOPILOT_JOBS_ENABLED on (`jobforge flags set NAME on`, or `jobforge dev --enable NAME ...`).

    jobforge keys create --tenant settler --scopes triggers:write,jobs:request,events:write,events:read,runs:read --json
    export JOBFORGE_API_URL=http://127.0.0.1:8000 JOBFORGE_API_KEY=jfk_...   # that key
    python -m examples.integrations.settler_contract_signed [--queue QUEUE ...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from examples.integrations._common import api_client
from jobforge import EventEnvelope, JobForgeClient
from jobforge.errors import TriggerExists
from jobforge.models import RouteEventResult, SafetyConfig, TriggerKind, TriggerSpec

TENANT = "settler"
TRIGGER = "contract-signed-check"


async def main(client: JobForgeClient, tenant: str = TENANT, queues: Sequence[str] = (),
               within: float = 120.0) -> RouteEventResult:
    with contextlib.suppress(TriggerExists):  # a second run of the example reuses the trigger
        await client.create_trigger(TriggerSpec(
            tenant_id=tenant, name=TRIGGER, kind=TriggerKind.EVENT, event_pattern="contract.signed",
            template_key="autopilot.jobforge.healthcheck",
            # the job's inputs come from the event: its payload names the queues to check (none: all of them)
            input_pointers={"task_queues": "/payload/queues"},
            safety=SafetyConfig(cooldown_seconds=0, max_runs=100, window_seconds=3600,
                                allow=("source_app:settler",))))
    receipt = await client.submit_event(EventEnvelope(
        tenant_id=tenant, event_id=f"contract-{uuid.uuid4().hex[:8]}", event_type="contract.signed",
        source_app="settler", source_module="contracts", occurred_at=datetime.now(UTC),
        payload={"contract_id": "C-1042", "queues": list(queues)}))
    print(f"event {receipt.event_id} accepted (duplicate: {receipt.duplicate})")
    result = await client.wait_routed(receipt)
    for fire in result.fires:
        print(f"trigger {fire.trigger_name}: {fire.verdict.value} ({'; '.join(fire.reasons)}) → {fire.run_workflow_id}")
        if fire.run_workflow_id:
            record = await client.wait_run(fire.run_workflow_id, within=within)
            print(f"  run {record.status.value}: healthy={record.summary.get('healthy')}")
    return result


async def _cli(tenant: str, queues: Sequence[str]) -> None:
    async with api_client() as client:
        await main(client, tenant, queues)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenant", default=TENANT)
    parser.add_argument("--queue", action="append", default=[], dest="queues",
                        help="a task queue the job checks (repeatable; default: every queue JobForge uses)")
    args = parser.parse_args()
    asyncio.run(_cli(args.tenant, args.queues))
