"""Events and triggers end to end against real Temporal and PostgreSQL."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio.client import WorkflowExecutionStatus

from activities.triggers import TriggerActivities
from jobforge.errors import FeatureDisabled, RoutingTimeout, TemporalUnavailable
from jobforge.models import (
    EventEnvelope,
    FireOutcome,
    RouteEventResult,
    RunStatus,
    SafetyConfig,
    TriggerKind,
    TriggerSpec,
    Verdict,
)
from shared.client import OperatorClient
from shared.events import router_workflow_id
from shared.flags import Flag
from shared.triggers.models import StoredEvent
from shared.triggers.schedules import schedule_id
from shared.triggers.service import TriggerService
from tests.support.tenants import new_tenant
from workers.runtime import Runtime
from workers.stack import temporal_binary

pytestmark = pytest.mark.integration

HC = "autopilot.jobforge.healthcheck"


@pytest.fixture
def all_on(monkeypatch: pytest.MonkeyPatch) -> None:
    for flag in (Flag.EVENTS, Flag.TRIGGERS, Flag.AUTOPILOT_JOBS, Flag.AUDIT_LOGGING):
        monkeypatch.setenv(flag.value, "1")


def service(rt: Runtime) -> TriggerService:
    assert rt.temporal is not None
    return TriggerService(rt.store.triggers, rt.temporal, rt.settings, rt.registry, rt.flags)


async def tenant(rt: Runtime) -> str:
    return await new_tenant(rt, "t")


def event_trigger(tenant_id: str, name: str, pattern: str, **safety: object) -> TriggerSpec:
    return TriggerSpec(tenant_id=tenant_id, name=name, kind=TriggerKind.EVENT, template_key=HC,
                       event_pattern=pattern, input_pointers={"task_queues": "/payload/queues"},
                       safety=SafetyConfig(**safety))  # type: ignore[arg-type]


async def submit(rt: Runtime, tenant_id: str, event_type: str, event_id: str | None = None) -> RouteEventResult | None:
    receipt = await rt.client().submit_event(EventEnvelope(
        tenant_id=tenant_id, event_id=event_id or uuid.uuid4().hex, event_type=event_type, source_app="settler",
        payload={"queues": [rt.settings.task_queue], "contract": {"id": "c-1"}}, occurred_at=datetime.now(UTC)))
    if receipt.duplicate:
        return None
    return await rt.client().wait_routed(receipt)


async def test_event_fans_out_to_matching_triggers_only(runtime: Runtime, worker: None, all_on: None) -> None:
    """An event fires the two triggers whose patterns match it, not the third; runs get event values."""
    t, svc = await tenant(runtime), service(runtime)
    await svc.create(event_trigger(t, "any-contract", "contract.*"))
    await svc.create(event_trigger(t, "signed", "contract.signed"))
    await svc.create(event_trigger(t, "invoices", "invoice.*"))
    result = await submit(runtime, t, "contract.signed")
    assert result is not None and result.matched == 2
    assert sorted(f.trigger_name for f in result.fires) == ["any-contract", "signed"]
    assert all(f.verdict is Verdict.FIRE and f.run_workflow_id and not f.start_error for f in result.fires)
    client = runtime.client()
    for fire in result.fires:
        assert fire.run_workflow_id is not None and runtime.temporal is not None
        await runtime.temporal.get_workflow_handle(fire.run_workflow_id).result()
        run = await client.get_run(fire.run_workflow_id, t)
        assert run.status is RunStatus.SUCCEEDED and run.actor == f"trigger:{fire.trigger_name}"
    stored = await runtime.store.triggers.events(t)
    assert [e.event_type for e in stored] == ["contract.signed"]


async def test_duplicate_event_fires_nothing(runtime: Runtime, worker: None, all_on: None) -> None:
    """A second copy of an event within the dedupe TTL is answered as a duplicate and fires nothing."""
    t, svc = await tenant(runtime), service(runtime)
    await svc.create(event_trigger(t, "signed", "contract.signed"))
    assert await submit(runtime, t, "contract.signed", "evt-1") is not None
    assert await submit(runtime, t, "contract.signed", "evt-1") is None
    assert len(await svc.fires(t)) == 1
    assert len(await runtime.store.triggers.events(t)) == 1


async def test_dry_run_trigger_records_and_starts_nothing(runtime: Runtime, worker: None, all_on: None) -> None:
    """A dry-run trigger stores what it would have fired, with the inputs, and starts no run."""
    t, svc = await tenant(runtime), service(runtime)
    await svc.create(event_trigger(t, "careful", "contract.*", dry_run=True))
    result = await submit(runtime, t, "contract.signed")
    assert result is not None and [f.verdict for f in result.fires] == [Verdict.DRY_RUN]
    records = await svc.dry_runs(t, "careful")
    assert len(records) == 1 and records[0].inputs == {"task_queues": [runtime.settings.task_queue]}
    assert records[0].run_workflow_id is None
    assert await runtime.client().list_runs(t) == []


async def test_deny_list_and_flag_off(runtime: Runtime, worker: None, all_on: None,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A denied source app is skipped with the reason; with triggers off, creating one is FeatureDisabled."""
    t, svc = await tenant(runtime), service(runtime)
    await svc.create(event_trigger(t, "no-settler", "contract.*", deny=("source_app:settler",)))
    result = await submit(runtime, t, "contract.signed")
    assert result is not None
    assert result.fires[0].verdict is Verdict.SKIP and result.fires[0].reasons == ["denied by source_app:settler"]
    monkeypatch.setenv(Flag.TRIGGERS.value, "0")
    with pytest.raises(FeatureDisabled):
        await svc.create(event_trigger(t, "later", "x.*"))


async def test_racing_fires_respect_cooldown(runtime: Runtime, worker: None, all_on: None) -> None:
    """Two fires of one trigger at the same instant: one fires, the other is held by the cooldown."""
    t, svc = await tenant(runtime), service(runtime)
    spec = TriggerSpec(tenant_id=t, name="nightly", kind=TriggerKind.CRON, template_key=HC, interval_seconds=3600,
                       inputs={"task_queues": [runtime.settings.task_queue]},
                       safety=SafetyConfig(cooldown_seconds=600), enabled=False)
    await svc.create(spec)
    await svc.resume(t, "nightly")
    outcomes = await asyncio.gather(svc.fire(t, "nightly"), svc.fire(t, "nightly"))
    verdicts = sorted(o.verdict.value for o in outcomes)
    assert verdicts == ["fire", "skip"]
    skipped = next(o for o in outcomes if o.verdict is Verdict.SKIP)
    assert skipped.reasons[0].startswith("cooldown")
    await svc.delete(t, "nightly")


async def test_cron_trigger_fires_then_is_held(runtime: Runtime, worker: None, all_on: None) -> None:
    """A 1-second Schedule fires, then cooldown and max-runs hold it; recorded decisions say why."""
    t, svc = await tenant(runtime), service(runtime)
    inputs = {"task_queues": [runtime.settings.task_queue]}
    await svc.create(TriggerSpec(tenant_id=t, name="cool", kind=TriggerKind.CRON, template_key=HC,
                                 interval_seconds=1, inputs=inputs, safety=SafetyConfig(cooldown_seconds=30)))
    await svc.create(TriggerSpec(tenant_id=t, name="capped", kind=TriggerKind.CRON, template_key=HC,
                                 interval_seconds=1, inputs=inputs, safety=SafetyConfig(max_runs=2, window_seconds=60)))
    try:
        for _ in range(100):
            fires = await svc.fires(t)
            cool = [f for f in fires if f.trigger_name == "cool"]
            capped = [f for f in fires if f.trigger_name == "capped"]
            if len(cool) >= 3 and len(capped) >= 4:
                break
            await asyncio.sleep(0.2)
        assert [f.verdict for f in cool].count(Verdict.FIRE) == 1
        assert any(f.reasons[0].startswith("cooldown") for f in cool if f.verdict is Verdict.SKIP)
        assert [f.verdict for f in capped].count(Verdict.FIRE) == 2
        assert any(f.reasons[0].startswith("max runs") for f in capped if f.verdict is Verdict.SKIP)
    finally:
        await svc.delete(t, "cool")
        await svc.delete(t, "capped")


async def test_schedule_paused_with_temporal_cli(runtime: Runtime, worker: None, all_on: None) -> None:
    """`temporal schedule toggle --pause` stops the firing and JobForge shows the trigger paused."""
    t, svc = await tenant(runtime), service(runtime)
    await svc.create(TriggerSpec(tenant_id=t, name="ticker", kind=TriggerKind.CRON, template_key=HC,
                                 interval_seconds=1, inputs={"task_queues": [runtime.settings.task_queue]},
                                 safety=SafetyConfig(dry_run=True)))
    try:
        for _ in range(50):
            if await svc.fires(t):
                break
            await asyncio.sleep(0.2)
        assert await svc.fires(t)
        done = await asyncio.to_thread(
            subprocess.run, [str(temporal_binary()), "schedule", "toggle", "--schedule-id", schedule_id(t, "ticker"),
                             "--pause", "--reason", "ops", "--address", runtime.settings.temporal_address],
            capture_output=True, text=True, timeout=30, check=False)
        assert done.returncode == 0, done.stderr
        view = await svc.show(t, "ticker")
        assert view.state == "paused"
        assert runtime.temporal is not None
        schedule = runtime.temporal.get_schedule_handle(schedule_id(t, "ticker"))
        for _ in range(200):  # a fire started before the pause lands first
            if not (await schedule.describe()).info.running_actions:
                break
            await asyncio.sleep(0.05)
        before = len(await svc.fires(t))
        await asyncio.sleep(2.5)  # a window in which a paused Schedule must not fire (time is the point)
        assert len(await svc.fires(t)) == before
        manual = await svc.fire(t, "ticker")
        assert isinstance(manual, FireOutcome)
        assert manual.verdict is Verdict.SKIP and manual.reasons == ["trigger is paused in Temporal"]
    finally:
        await svc.delete(t, "ticker")


async def test_router_continues_as_new_and_routes_each_event_once(
        runtime: Runtime, worker: None, all_on: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tenant's router hands over to a new run after its quota of events; none is lost or routed twice."""
    from workflows import event_router

    monkeypatch.setattr(event_router, "ROUTED_PER_RUN", 3)
    monkeypatch.setattr(event_router, "BATCH", 2)
    t, svc = await tenant(runtime), service(runtime)
    await svc.create(event_trigger(t, "signed", "contract.signed", dry_run=True))
    client = runtime.client()
    receipts = []
    for i in range(8):  # one after another: several batches, so several runs of the router
        receipts.append(await client.submit_event(EventEnvelope(
            tenant_id=t, event_id=f"e{i}", event_type="contract.signed", payload={"queues": ["q"], "i": i})))
        await client.wait_routed(receipts[-1])
    # a burst: the router hands over with events still queued, and its next run routes them
    receipts += await asyncio.gather(*(client.submit_event(EventEnvelope(
        tenant_id=t, event_id=f"b{i}", event_type="contract.signed", payload={"queues": ["q"]})) for i in range(20)))
    results = [await client.wait_routed(r) for r in receipts]
    assert all(r.matched == 1 and [f.verdict for f in r.fires] == [Verdict.DRY_RUN] for r in results)
    assert len(await svc.fires(t, limit=100)) == 28
    assert runtime.temporal is not None
    runs = [w async for w in runtime.temporal.list_workflows(f"WorkflowId = '{router_workflow_id(t)}'")]
    assert len(runs) >= 3, "the router did not continue as new"
    assert sum(r.status is WorkflowExecutionStatus.CONTINUED_AS_NEW for r in runs) >= 2


async def test_router_retries_a_failing_event_without_holding_the_others(
        runtime: Runtime, worker: None, all_on: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """An event whose routing keeps failing is retried with a back-off; the tenant's next events are
    routed meanwhile; once it can be routed, it fires exactly once."""
    t, svc = await tenant(runtime), service(runtime)
    await svc.create(event_trigger(t, "signed", "contract.signed", dry_run=True))
    failures: list[str] = []
    broken = asyncio.Event()
    broken.set()
    route = TriggerActivities._route

    async def flaky(self: TriggerActivities, stored: StoredEvent, *args: Any, **kwargs: Any) -> RouteEventResult:
        if stored.event_id == "bad" and broken.is_set():
            failures.append(stored.event_id)
            raise ConnectionError("the database went away")
        return await route(self, stored, *args, **kwargs)

    monkeypatch.setattr(TriggerActivities, "_route", flaky)
    client = runtime.client()
    bad = await client.submit_event(EventEnvelope(tenant_id=t, event_id="bad", event_type="contract.signed",
                                                   payload={"queues": ["q"]}))
    for _ in range(500):
        if failures:
            break
        await asyncio.sleep(0.01)
    assert failures, "the failing event was never tried"
    good = await client.submit_event(EventEnvelope(tenant_id=t, event_id="good", event_type="contract.signed",
                                                    payload={"queues": ["q"]}))
    assert (await client.wait_routed(good, within=10)).matched == 1
    stored = {e.event_id: e for e in await runtime.store.triggers.events(t)}
    assert stored["good"].routed_at is not None and stored["bad"].routed_at is None
    with pytest.raises(RoutingTimeout):
        await client.wait_routed(bad, within=0.2)
    for _ in range(1000):  # retried after its back-off, not given up
        if len(failures) >= 2:
            break
        await asyncio.sleep(0.01)
    assert len(failures) >= 2
    broken.clear()
    routed = await client.wait_routed(bad, within=30)
    assert [f.verdict for f in routed.fires] == [Verdict.DRY_RUN]
    fires = await svc.fires(t, limit=100)
    assert sorted(f.event_id for f in fires) == ["bad", "good"]


async def test_failed_hand_over_forgets_the_event_and_admits_the_retry(
        runtime: Runtime, worker: None, all_on: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Temporal refusing the hand-over to the router: a typed retryable error, no stored copy left
    behind, and the retry of the same event is admitted (not a duplicate) and routed once."""
    from shared import events

    t, svc = await tenant(runtime), service(runtime)
    await svc.create(event_trigger(t, "signed", "contract.signed", dry_run=True))
    handed = events.start_routing

    async def refused(*args: object, **kwargs: object) -> str:
        raise RuntimeError("Temporal is away")

    monkeypatch.setattr(events, "start_routing", refused)
    envelope = EventEnvelope(tenant_id=t, event_id="e-1", event_type="contract.signed", payload={"queues": ["q"]})
    client = runtime.client()
    with pytest.raises(TemporalUnavailable) as refusal:
        await client.submit_event(envelope)
    assert refusal.value.retryable
    assert await runtime.store.triggers.events(t) == []
    monkeypatch.setattr(events, "start_routing", handed)
    receipt = await client.submit_event(envelope)
    assert not receipt.duplicate
    assert [f.verdict for f in (await client.wait_routed(receipt)).fires] == [Verdict.DRY_RUN]
    assert len(await svc.fires(t)) == 1


async def test_new_router_run_sweeps_up_events_stored_but_never_routed(
        runtime: Runtime, worker: None, all_on: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """An event whose signal died with its router run (terminated) is still stored, with its submitter;
    the tenant's next router run routes it, judging that submitter (here: denied)."""
    from workflows import event_router

    monkeypatch.setattr(event_router, "SWEEP_AFTER", timedelta(0))
    t, svc = await tenant(runtime), service(runtime)
    await svc.create(event_trigger(t, "signed", "contract.signed", dry_run=True, deny=["actor:mallory"]))
    store = runtime.store.triggers
    lost_key = f"jobforge/{t}/event/contract.signed/lost/1"
    await store.insert_event(EventEnvelope(tenant_id=t, event_id="lost", event_type="contract.signed",
                                           payload={"queues": ["q"]}), "0" * 32, lost_key, "mallory")
    client = runtime.client()
    receipt = await client.submit_event(EventEnvelope(tenant_id=t, event_id="next", event_type="contract.signed",
                                                      payload={"queues": ["q"]}))
    assert [f.verdict for f in (await client.wait_routed(receipt)).fires] == [Verdict.DRY_RUN]
    for _ in range(500):
        lost = await store.event(t, lost_key)
        if lost is not None and lost.routing is not None:
            break
        await asyncio.sleep(0.02)
    assert lost is not None and lost.routing is not None and lost.actor == "mallory"
    assert [(f.verdict, f.reasons) for f in lost.routing.fires] == [(Verdict.SKIP, ["denied by actor:mallory"])]
    assert sorted(f.event_id for f in await svc.fires(t)) == ["lost", "next"]


async def test_sharded_routers_route_each_event_once(runtime: Runtime, worker: None, all_on: None) -> None:
    """With JOBFORGE_EVENT_ROUTER_SHARDS=3 a tenant's events spread over three routers, each routed once."""
    t, svc = await tenant(runtime), service(runtime)
    await svc.create(event_trigger(t, "signed", "contract.signed", dry_run=True))
    assert runtime.temporal is not None
    client = OperatorClient(runtime.temporal, runtime.settings.replace(event_router_shards=3),
                            runtime.registry, store=runtime.store, flags=runtime.flags, gate=runtime.gate)
    receipts = await asyncio.gather(*(client.submit_event(EventEnvelope(
        tenant_id=t, event_id=f"s{i}", event_type="contract.signed", payload={"queues": ["q"]})) for i in range(30)))
    results = [await client.wait_routed(r) for r in receipts]
    assert all([f.verdict for f in r.fires] == [Verdict.DRY_RUN] for r in results)
    assert sorted(f.event_id for f in await svc.fires(t, limit=100)) == sorted(f"s{i}" for i in range(30))
    routers = {w.id async for w in runtime.temporal.list_workflows(f"JobForgeTenant = '{t}'")}
    assert routers == {router_workflow_id(t, shard) for shard in range(3)}


async def test_event_trigger_is_relaxed_and_tightened_with_update(runtime: Runtime, worker: None, all_on: None) -> None:
    """`update` on an event trigger changes its safety config: a dry-run trigger set to fire starts a run for
    the next event; an allow list that the event's source does not match then skips it; schedule options are
    refused for it; a stored strict trigger with no allow list (made before create refused one) says every
    fire is skipped."""
    from jobforge.errors import InvalidRequest
    from jobforge.models import strict_safety_config
    from shared.triggers.service import TriggerChanges

    t, svc = await tenant(runtime), service(runtime)
    await svc.create(event_trigger(t, "signed", "contract.signed", dry_run=True))
    first = await submit(runtime, t, "contract.signed")
    assert first is not None and first.fires[0].verdict is Verdict.DRY_RUN
    view = await svc.update(t, "signed", TriggerChanges(dry_run=False))
    assert not view.trigger.safety.dry_run and view.state == "active"
    second = await submit(runtime, t, "contract.signed")
    assert second is not None and second.fires[0].verdict is Verdict.FIRE and second.fires[0].run_workflow_id
    await svc.update(t, "signed", TriggerChanges(allow=("source_app:elsewhere",)))
    third = await submit(runtime, t, "contract.signed")
    assert third is not None and third.fires[0].reasons == ["no allow-list entry matches"]
    with pytest.raises(InvalidRequest, match="only cron triggers"):
        await svc.update(t, "signed", TriggerChanges(timezone="UTC"))
    legacy = await svc.store.create(event_trigger(t, "legacy", "x.*").model_copy(
        update={"safety": strict_safety_config()}))
    shown = await svc.view(legacy)
    assert shown.strict and "strict triggers need an allow list" in shown.skips


async def test_fires_recorded_before_the_fire_workflow_read_its_own_input_replay(
        runtime: Runtime, all_on: None) -> None:
    """A fire recorded by the earlier `jobforge.trigger.fire` (its argument typed in the run signature) replays
    on today's workflow, which reads its arguments itself."""
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.worker import Replayer, Worker

    from shared.triggers.models import TriggerFireInput
    from tests.support.earlier_workflows import EarlierTriggerFire
    from workflows.trigger_fire import TriggerFireWorkflow

    t, svc = await tenant(runtime), service(runtime)
    made = await svc.create(TriggerSpec(tenant_id=t, name="old", kind=TriggerKind.EVENT, template_key=HC,
                                        event_pattern="x.*", safety=SafetyConfig(dry_run=True)))
    assert runtime.temporal is not None
    activities = TriggerActivities(runtime.store, runtime.gate, runtime.temporal, runtime.settings, runtime.registry)
    queue = f"earlier-{uuid.uuid4().hex[:8]}"
    async with Worker(runtime.temporal, task_queue=queue, workflows=[EarlierTriggerFire],
                      activities=[activities.fire]):
        handle = await runtime.temporal.start_workflow(
            "jobforge.trigger.fire", TriggerFireInput(tenant_id=t, trigger_id=made.trigger.trigger_id,
                                                      trigger_name="old", source="manual", actor="cli"),
            id=f"jobforge/{t}/trigger/old/manual/{uuid.uuid4().hex}", task_queue=queue, result_type=FireOutcome)
        outcome = await handle.result()
    assert outcome.verdict is Verdict.DRY_RUN, outcome.reasons
    history = await handle.fetch_history()
    replayed = await Replayer(workflows=[TriggerFireWorkflow], data_converter=pydantic_data_converter).replay_workflow(
        history, raise_on_replay_failure=False)
    assert replayed.replay_failure is None, replayed.replay_failure
