"""The job path against a real Temporal dev server and the real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from temporalio.client import Client

from jobforge.errors import FeatureDisabled, IdempotencyConflict, InvalidInputs, TemplateNotFound
from jobforge.models import JobRun, RunStatus
from shared.flags import Flag
from shared.healthcheck import HealthcheckReport
from shared.temporal import TENANT, run_search_attributes
from tests.support.tenants import ensure_tenants
from workers.runtime import Runtime

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
async def _tenants(runtime: Runtime) -> None:
    """The tenants these tests name exist."""
    await ensure_tenants(runtime, "acme", "filterme", "rawco")

HEALTHCHECK = "autopilot.jobforge.healthcheck"


@pytest.fixture
def autopilot_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(Flag.AUTOPILOT_JOBS.value, "1")


async def test_healthcheck_runs_and_is_recorded(runtime: Runtime, worker: None, autopilot_on: None) -> None:
    """A requested healthcheck runs through Temporal, reports healthy, and its run record is stored."""
    client = runtime.client()
    handle = await client.request_job("acme", HEALTHCHECK, {}, trace_id="trace-1", actor="tester")
    report = await client.result(handle)
    assert isinstance(report, HealthcheckReport)
    assert report.healthy, report
    assert {c.name for c in report.checks} == {"database", "temporal", "workers"}
    record = await client.get_run(handle.run_id, "acme")
    assert record.status is RunStatus.SUCCEEDED
    assert record.summary == {"healthy": True}
    assert record.trace_id == "trace-1" and record.actor == "tester"
    assert record.input_hash.startswith("sha256:")
    assert record.finished_at is not None
    assert [r.run_id for r in await client.list_runs("acme")][:1] == [handle.run_id]
    assert runtime.temporal is not None
    recorded = await admission_results(runtime.temporal, handle.workflow_id)
    assert len(recorded) == 1  # the run's history holds the verdict, not what the run record keeps
    assert recorded[0]["admitted"] is True  # fields at their default (no reason, no error) are left out
    assert not {"input_hash", "trace_id", "reason", "error_code", "error_details"} & set(recorded[0])
    assert recorded[0]["search_attributes"]["JobForgeTrace"] == "trace-1"


async def admission_results(temporal: Client, workflow_id: str) -> list[dict[str, Any]]:
    """The results of the ``jobforge.admit`` local activity as the run's history records them."""
    found = []
    for event in (await temporal.get_workflow_handle(workflow_id).fetch_history()).events:
        if not event.HasField("marker_recorded_event_attributes"):
            continue
        details = event.marker_recorded_event_attributes.details
        data, result = details.get("data"), details.get("result")
        if data and data.payloads and result and b'"jobforge.admit"' in data.payloads[0].data:
            found.append(json.loads(result.payloads[0].data))
    return found


async def test_search_attributes_let_the_ui_filter_by_tenant(runtime: Runtime, worker: None,
                                                             autopilot_on: None) -> None:
    """Every run carries JobForgeTenant/Template/Trace, so a visibility query by tenant finds it."""
    client = runtime.client()
    handle = await client.request_job("filterme", HEALTHCHECK, {})
    await client.result(handle)
    assert runtime.temporal is not None
    desc = await runtime.temporal.get_workflow_handle(handle.workflow_id).describe()
    assert desc.typed_search_attributes.get(TENANT) == "filterme"
    for _ in range(50):  # visibility is eventually consistent
        found = [w.id async for w in runtime.temporal.list_workflows("JobForgeTenant = 'filterme'")]
        if handle.workflow_id in found:
            break
        await asyncio.sleep(0.1)
    assert handle.workflow_id in found


async def test_same_idempotency_key_gives_one_run(runtime: Runtime, worker: None, autopilot_on: None) -> None:
    """Requesting twice (also concurrently) with one idempotency key starts exactly one run."""
    client = runtime.client()
    first, second = await asyncio.gather(
        client.request_job("acme", HEALTHCHECK, {}, idempotency_key="deploy-42"),
        client.request_job("acme", HEALTHCHECK, {}, idempotency_key="deploy-42"),
    )
    assert first.run_id == second.run_id
    assert sorted([first.created, second.created]) == [False, True]
    await client.result(first)
    third = await client.request_job("acme", HEALTHCHECK, {}, idempotency_key="deploy-42")
    assert third.run_id == first.run_id and not third.created
    runs = [r for r in await client.list_runs("acme", limit=1000) if r.idempotency_key == "deploy-42"]
    assert len(runs) == 1


async def test_idempotency_key_reused_with_other_inputs_is_a_conflict(runtime: Runtime, worker: None,
                                                                       autopilot_on: None) -> None:
    """The same key with different inputs is refused, not silently run again."""
    client = runtime.client()
    await client.result(await client.request_job("acme", HEALTHCHECK, {}, idempotency_key="k-conflict"))
    with pytest.raises(IdempotencyConflict):
        await client.request_job("acme", HEALTHCHECK, {"task_queues": ["x"]}, idempotency_key="k-conflict")


async def test_flag_off_is_feature_disabled(runtime: Runtime, worker: None) -> None:
    """With JOBFORGE_AUTOPILOT_JOBS_ENABLED off the request fails with FeatureDisabled naming it."""
    with pytest.raises(FeatureDisabled) as info:
        await runtime.client().request_job("acme", HEALTHCHECK, {})
    assert info.value.flag == "JOBFORGE_AUTOPILOT_JOBS_ENABLED"


async def test_raw_start_meets_admission(runtime: Runtime, worker: None) -> None:
    """A raw Temporal start (as `temporal workflow start` would do) is rejected by admission and recorded."""
    assert runtime.temporal is not None
    from temporalio.client import WorkflowFailureError

    from jobforge.errors import typed_error

    handle = await runtime.temporal.start_workflow(
        HEALTHCHECK, JobRun(tenant_id="rawco", template_key=HEALTHCHECK), id="raw-start-1",
        task_queue=runtime.settings.task_queue,
        search_attributes=run_search_attributes("rawco", HEALTHCHECK, "t"))
    with pytest.raises(WorkflowFailureError) as info:
        await handle.result()
    err = typed_error(info.value)
    assert isinstance(err, FeatureDisabled) and err.flag == "JOBFORGE_AUTOPILOT_JOBS_ENABLED"
    record = await runtime.store.get_run("raw-start-1")
    assert record.status is RunStatus.REJECTED
    assert "JOBFORGE_AUTOPILOT_JOBS_ENABLED" in record.error


async def test_bad_inputs_and_unknown_template(runtime: Runtime, worker: None, autopilot_on: None) -> None:
    """Inputs that do not fit the template's model, and unknown templates, are typed errors."""
    client = runtime.client()
    with pytest.raises(InvalidInputs) as info:
        await client.request_job("acme", HEALTHCHECK, {"nope": 1})
    assert "nope" in info.value.message
    with pytest.raises(TemplateNotFound):
        await client.request_job("acme", "autopilot.nothing.here", {})


async def test_store_override_reaches_a_running_worker(runtime: Runtime, worker: None) -> None:
    """`flags set` in the store flips admission in an already-running worker within 5 seconds."""
    from temporalio.client import WorkflowFailureError

    from shared.client import OperatorClient

    # a client without the store does no pre-check: only the worker's admission decides
    bare = OperatorClient(runtime.temporal, runtime.settings, runtime.registry)  # type: ignore[arg-type]
    await runtime.store.set_flag_override(Flag.AUTOPILOT_JOBS, True, "test")
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        while True:
            handle = await bare.request_job("acme", HEALTHCHECK, {})
            try:
                await bare.result(handle)
                break
            except FeatureDisabled:
                assert loop.time() - started < 5, "override not honoured within 5 s"
                await asyncio.sleep(0.2)
        await runtime.store.set_flag_override(Flag.AUTOPILOT_JOBS, False, "test")
        started = loop.time()
        while True:
            handle = await bare.request_job("acme", HEALTHCHECK, {})
            try:
                await bare.result(handle)
            except FeatureDisabled:
                break
            assert loop.time() - started < 5, "kill switch not honoured within 5 s"
            await asyncio.sleep(0.2)
    except WorkflowFailureError:
        raise
    finally:
        await runtime.store.delete_flag_override(Flag.AUTOPILOT_JOBS)


def markers_and_upserts(history: Any) -> tuple[list[str], int]:
    """The marker names a history records, and how many search-attribute upserts."""
    from temporalio.api.enums.v1 import EventType

    names = [e.marker_recorded_event_attributes.marker_name for e in history.events
             if e.HasField("marker_recorded_event_attributes")]
    return names, sum(e.event_type == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES for e in history.events)


async def test_jobforge_started_run_records_no_patch_marker(runtime: Runtime, worker: None,
                                                            autopilot_on: None) -> None:
    """A run JobForge starts (its memo says its bookkeeping is local) records its bookkeeping as local-activity
    markers without the bookkeeping patch's marker and upsert, and its history replays; a raw start of the
    same template without that memo takes the patched path (marker and TemporalChangeVersion upsert)."""
    from temporalio.worker import Replayer

    from shared.temporal import DATA_CONVERTER
    from workers.worker import WORKFLOW_RUNNER
    from workflows import discover
    from workflows._job import JobArguments

    assert runtime.temporal is not None
    client = runtime.client()
    handle = await client.request_job("acme", HEALTHCHECK, {})
    await client.result(handle)
    history = await runtime.temporal.get_workflow_handle(handle.workflow_id).fetch_history()
    names, upserts = markers_and_upserts(history)
    assert names == ["core_local_activity", "core_local_activity"] and upserts == 0, (names, upserts)
    replayer = Replayer(workflows=discover(), data_converter=DATA_CONVERTER, workflow_runner=WORKFLOW_RUNNER,
                        interceptors=[JobArguments(frozenset({HEALTHCHECK}))])
    replayed = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert replayed.replay_failure is None, replayed.replay_failure

    raw = await runtime.temporal.start_workflow(
        HEALTHCHECK, JobRun(tenant_id="rawco", template_key=HEALTHCHECK), id=f"raw-memo-less-{handle.run_id}",
        task_queue=runtime.settings.task_queue, search_attributes=run_search_attributes("rawco", HEALTHCHECK, "t"))
    await raw.result()  # admitted as an operator's request, on the patched path
    names, upserts = markers_and_upserts(await raw.fetch_history())
    assert names[:2] == ["core_patch", "core_local_activity"] and upserts >= 1, (names, upserts)
