"""AIAS: `agent.execution.completed` events meet a strict (dry-run) trigger: recorded, not fired.

    .venv/bin/python -m examples.integrations.aias_agent_completed
"""

from __future__ import annotations

import contextlib
import uuid

from examples.integrations._operator import run_example
from jobforge.errors import TriggerExists
from jobforge.models import EventEnvelope, FireRecord, TriggerKind, TriggerSpec, strict_safety_config
from shared.flags import Flag
from shared.triggers.service import TriggerService
from workers.runtime import Runtime

TENANT = "aias"
FLAGS = (Flag.EVENTS, Flag.TRIGGERS, Flag.AUTOPILOT_JOBS)


async def main(rt: Runtime, tenant: str = TENANT) -> list[FireRecord]:
    await rt.gate.tenants.ensure_tenant(tenant)  # a first run of the example makes its tenant
    assert rt.temporal is not None
    triggers = TriggerService(rt.store.triggers, rt.temporal, rt.settings, rt.registry, rt.flags)
    strict = strict_safety_config().model_copy(update={"allow": ("event_type:agent.execution.*",)})
    with contextlib.suppress(TriggerExists):
        await triggers.create(TriggerSpec(
            tenant_id=tenant, name="agent-completed-audit", kind=TriggerKind.EVENT,
            event_pattern="agent.execution.completed", template_key="autopilot.jobforge.healthcheck",
            inputs={"task_queues": [rt.settings.task_queue]}, safety=strict))
    receipt = await rt.client().submit_event(EventEnvelope(
        tenant_id=tenant, event_id=f"exec-{uuid.uuid4().hex[:8]}", event_type="agent.execution.completed",
        source_app="aias", payload={"agent": "planner", "status": "ok", "tokens_used": 1234}))
    await rt.client().wait_routed(receipt)
    records = list(await triggers.dry_runs(tenant, "agent-completed-audit", limit=5))
    for record in records:
        print(f"{record.fired_at.isoformat(timespec='seconds')} dry run: would run {record.inputs} "
              f"({'; '.join(record.reasons)})")
    return records


if __name__ == "__main__":
    run_example(main, FLAGS)
