"""AIAS: `agent.execution.completed` events meet a strict (dry-run) trigger: recorded, not fired.

Only the SDK is needed (`pip install jobforge`): the trigger, the event and the dry-run records go through
`jobforge-api` with the tenant's key, which needs the scopes `triggers:write`, `triggers:read` and
`jobs:request` (the trigger's template's), `events:write` and `events:read`. The stack needs
JOBFORGE_EVENTS_ENABLED and JOBFORGE_TRIGGERS_ENABLED on.

    jobforge keys create --tenant aias --scopes triggers:*,jobs:request,events:* --json
    export JOBFORGE_API_URL=http://127.0.0.1:8000 JOBFORGE_API_KEY=jfk_...   # that key
    python -m examples.integrations.aias_agent_completed
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import uuid

from examples.integrations._common import api_client
from jobforge import EventEnvelope, JobForgeClient
from jobforge.errors import TriggerExists
from jobforge.models import FireRecord, TriggerKind, TriggerSpec, strict_safety_config

TENANT = "aias"
TRIGGER = "agent-completed-audit"


async def main(client: JobForgeClient, tenant: str = TENANT) -> list[FireRecord]:
    strict = strict_safety_config().model_copy(update={"allow": ("event_type:agent.execution.*",)})
    with contextlib.suppress(TriggerExists):  # a second run of the example reuses the trigger
        await client.create_trigger(TriggerSpec(
            tenant_id=tenant, name=TRIGGER, kind=TriggerKind.EVENT, event_pattern="agent.execution.completed",
            template_key="autopilot.jobforge.healthcheck", safety=strict))
    receipt = await client.submit_event(EventEnvelope(
        tenant_id=tenant, event_id=f"exec-{uuid.uuid4().hex[:8]}", event_type="agent.execution.completed",
        source_app="aias", payload={"agent": "planner", "status": "ok", "tokens_used": 1234}))
    await client.wait_routed(receipt)
    records = await client.dry_runs(TRIGGER, limit=5)
    for record in records:
        print(f"{record.fired_at.isoformat(timespec='seconds')} dry run: would run {record.inputs} "
              f"({'; '.join(record.reasons)})")
    return records


async def _cli(tenant: str) -> None:
    async with api_client() as client:
        await main(client, tenant)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenant", default=TENANT)
    asyncio.run(_cli(parser.parse_args().tenant))
