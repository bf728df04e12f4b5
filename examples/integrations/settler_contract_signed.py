"""Settler: a `contract.signed` event fires a trigger that runs a job with values from the event.

    jobforge flags set JOBFORGE_EVENTS_ENABLED on   # and TRIGGERS, AUTOPILOT_JOBS (or export them for `jobforge dev`)
    .venv/bin/python -m examples.integrations.settler_contract_signed
"""

from __future__ import annotations

import contextlib
import uuid
from datetime import UTC, datetime

from examples.integrations._operator import run_example
from jobforge.errors import TriggerExists
from jobforge.models import EventEnvelope, RouteEventResult, SafetyConfig, TriggerKind, TriggerSpec
from shared.flags import Flag
from shared.triggers.service import TriggerService
from workers.runtime import Runtime

TENANT = "settler"
FLAGS = (Flag.EVENTS, Flag.TRIGGERS, Flag.AUTOPILOT_JOBS)


async def main(rt: Runtime, tenant: str = TENANT) -> RouteEventResult:
    await rt.gate.tenants.ensure_tenant(tenant)  # a first run of the example makes its tenant
    assert rt.temporal is not None
    triggers = TriggerService(rt.store.triggers, rt.temporal, rt.settings, rt.registry, rt.flags)
    with contextlib.suppress(TriggerExists):  # a second run of the example reuses the trigger
        await triggers.create(TriggerSpec(
            tenant_id=tenant, name="contract-signed-check", kind=TriggerKind.EVENT, event_pattern="contract.signed",
            template_key="autopilot.jobforge.healthcheck",
            # the job's inputs come from the event: its payload names the queues to check
            input_pointers={"task_queues": "/payload/queues"},
            safety=SafetyConfig(cooldown_seconds=0, max_runs=100, window_seconds=3600,
                                allow=("source_app:settler",))))
    receipt = await rt.client().submit_event(EventEnvelope(
        tenant_id=tenant, event_id=f"contract-{uuid.uuid4().hex[:8]}", event_type="contract.signed",
        source_app="settler", source_module="contracts", occurred_at=datetime.now(UTC),
        payload={"contract_id": "C-1042", "queues": [rt.settings.task_queue]}))
    print(f"event {receipt.event_id} accepted (duplicate: {receipt.duplicate})")
    result = await rt.client().wait_routed(receipt)
    assert isinstance(result, RouteEventResult)
    for fire in result.fires:
        print(f"trigger {fire.trigger_name}: {fire.verdict.value} ({'; '.join(fire.reasons)}) → {fire.run_workflow_id}")
        if fire.run_workflow_id:
            outcome = await rt.temporal.get_workflow_handle(fire.run_workflow_id).result()
            print(f"  run result: healthy={outcome['healthy']}")
    return result


if __name__ == "__main__":
    run_example(main, FLAGS)
