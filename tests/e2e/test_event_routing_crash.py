"""A worker killed in the middle of routing events loses none and duplicates none."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from jobforge.models import EventEnvelope, RouteEventResult, TriggerKind, TriggerSpec, Verdict
from shared.flags import Flag
from shared.settings import Settings
from shared.triggers.service import TriggerService
from tests.support.procs import start_worker
from workers.runtime import open_runtime

pytestmark = pytest.mark.e2e

FLAGS = {Flag.EVENTS.value: "1", Flag.TRIGGERS.value: "1", Flag.AUTOPILOT_JOBS.value: "1"}
EVENTS = 30


async def test_sigkill_mid_routing_loses_no_event(settings: Settings, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """30 events accepted; the worker is SIGKILLed mid-way; after a new worker, each fired exactly once."""
    for name, value in FLAGS.items():
        monkeypatch.setenv(name, value)
    tenant = f"crash{uuid.uuid4().hex[:8]}"
    log = tmp_path / "worker.log"
    async with open_runtime(settings) as rt:
        assert rt.temporal is not None
        await rt.gate.tenants.create_tenant(tenant)
        triggers = TriggerService(rt.store.triggers, rt.temporal, settings, rt.registry, rt.flags)
        await triggers.create(TriggerSpec(tenant_id=tenant, name="every-job", kind=TriggerKind.EVENT,
                                          template_key="autopilot.jobforge.healthcheck", event_pattern="job.*",
                                          inputs={"task_queues": [settings.task_queue]}))
        first = start_worker(settings, log, FLAGS)
        try:
            receipts = await asyncio.gather(*(rt.client().submit_event(EventEnvelope(
                tenant_id=tenant, event_id=f"e{i}", event_type="job.done", payload={"i": i}))
                for i in range(EVENTS)))
            store = rt.store.triggers
            for _ in range(2000):  # kill once routing is under way (fires decided), not finished
                if len(await triggers.fires(tenant, limit=1000)) >= 3:
                    break
                await asyncio.sleep(0.005)
            first.kill()
            await asyncio.to_thread(first.wait, 10)
            routed_before = sum(e.routed_at is not None for e in await store.events(tenant, limit=1000))
            fired_before = len(await triggers.fires(tenant, limit=1000))
        finally:
            if first.poll() is None:
                first.kill()
        second = start_worker(settings, log, FLAGS)
        try:
            results = await asyncio.wait_for(asyncio.gather(*(
                rt.client().wait_routed(r)
                for r in receipts)), 120)
        finally:
            second.terminate()
            await asyncio.to_thread(second.wait, 20)
        assert fired_before >= 3 and routed_before < EVENTS, \
            f"the worker was killed too early or late ({fired_before} fired, {routed_before} routed)"
        print(f"killed with {fired_before} of {EVENTS} fires decided and {routed_before} events marked routed")
        events = await store.events(tenant, limit=1000)
        fires = await triggers.fires(tenant, limit=1000)
        assert sorted(e.event_id for e in events) == sorted(f"e{i}" for i in range(EVENTS))  # none lost, none twice
        assert len(fires) == EVENTS and all(f.verdict is Verdict.FIRE for f in fires)
        assert len({f.run_workflow_id for f in fires}) == EVENTS
        assert all(isinstance(r, RouteEventResult) and r.matched == 1 for r in results)
