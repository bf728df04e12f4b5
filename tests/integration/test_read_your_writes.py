"""A run is readable as soon as its id is handed out (queued), on every read path, and admission moves it on."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from temporalio.client import WorkflowFailureError

from jobforge.client import JobForgeClient
from jobforge.models import JobRun, RunRecord, RunStatus
from shared.flags import Flag
from shared.stale_runs import settle, sweep
from shared.temporal import run_search_attributes
from tests.support.tenants import ensure_tenants, new_tenant
from workers.api import create_app
from workers.runtime import Runtime

pytestmark = pytest.mark.integration

HEALTHCHECK = "autopilot.jobforge.healthcheck"


@pytest.fixture(autouse=True)
async def _tenants(runtime: Runtime) -> None:
    """The tenants these tests name exist."""
    await ensure_tenants(runtime, "ryw-admit", "ryw-dup", "ryw-off", "ryw-raw")


@pytest.fixture
def autopilot_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(Flag.AUTOPILOT_JOBS.value, "1")


@pytest.fixture
def transport(runtime: Runtime, autopilot_on: None) -> httpx.ASGITransport:
    """The HTTP ingress in this process."""
    return httpx.ASGITransport(app=create_app(runtime.settings, runtime))


@pytest.fixture
async def api(transport: httpx.ASGITransport) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        yield client


async def key_for(runtime: Runtime, scopes: list[str]) -> tuple[str, str]:
    tenant = f"ryw-{uuid.uuid4().hex[:8]}"
    await runtime.gate.tenants.create_tenant(tenant)
    return tenant, (await runtime.gate.tenants.create_key(tenant, scopes)).secret


async def until_final(runtime: Runtime, run_id: str) -> RunRecord:
    for _ in range(300):
        record = await runtime.client().get_run(run_id)
        if record.status.is_final:
            return record
        await asyncio.sleep(0.05)
    raise AssertionError(f"run {run_id} did not finish: {record}")


async def test_a_run_is_readable_at_once_over_http_and_the_sdks(runtime: Runtime, api: httpx.AsyncClient,
                                                                 transport: httpx.ASGITransport) -> None:
    """With no worker yet, POST /v1/jobs answers 202 and GET /v1/runs/{id} (run id or workflow id), the HTTP
    SDK, the Temporal-direct SDK and the tenant's run list all find the run as queued."""
    tenant, key = await key_for(runtime, ["jobs:*", "runs:read"])
    headers = {"Authorization": f"Bearer {key}"}
    posted = await api.post("/v1/jobs", headers=headers, json={"template_key": HEALTHCHECK, "inputs": {},
                                                                "trace_id": "ryw-trace"})
    assert posted.status_code == 202, posted.text
    handle = posted.json()
    assert posted.headers["location"] == f"/v1/runs/{handle['run_id']}"
    for ident in (handle["run_id"], handle["workflow_id"]):
        got = await api.get(f"/v1/runs/{ident}", headers=headers)
        assert got.status_code == 200, got.text
        assert got.json()["status"] == "queued" and got.json()["run_id"] == handle["run_id"]
    async with JobForgeClient("http://api", key, transport=transport) as sdk:
        assert (await sdk.get_run(handle["run_id"])).status is RunStatus.QUEUED
    record = await runtime.client().get_run(handle["run_id"], tenant)
    assert (record.status, record.trace_id, record.template_key, record.finished_at) == (
        RunStatus.QUEUED, "ryw-trace", HEALTHCHECK, None)
    assert [r.run_id for r in await runtime.client().list_runs(tenant)] == [handle["run_id"]]


async def test_admission_moves_the_queued_record_on(runtime: Runtime, worker: None, autopilot_on: None) -> None:
    """The queued record becomes running, then succeeded: one row, admission's input hash, a finish time."""
    client = runtime.client()
    handle = await client.request_job("ryw-admit", HEALTHCHECK, {}, idempotency_key=f"k-{uuid.uuid4().hex}")
    queued = await client.get_run(handle.run_id)
    assert queued.status in (RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.SUCCEEDED)
    await client.result(handle)
    record = await client.get_run(handle.run_id)
    assert record.status is RunStatus.SUCCEEDED and record.finished_at is not None
    assert record.idempotency_key == handle.workflow_id.rsplit("/", 1)[1]
    assert [r.run_id for r in await client.list_runs("ryw-admit", limit=1000)].count(handle.run_id) == 1


async def test_a_repeated_request_finds_the_queued_run(runtime: Runtime, autopilot_on: None) -> None:
    """Before any worker admits it, the same idempotency key answers the same queued run (created False)."""
    client = runtime.client()
    key = f"dup-{uuid.uuid4().hex}"
    first = await client.request_job("ryw-dup", HEALTHCHECK, {}, idempotency_key=key)
    again = await client.request_job("ryw-dup", HEALTHCHECK, {}, idempotency_key=key)
    assert (again.run_id, again.created, first.created) == (first.run_id, False, True)
    runs = await client.list_runs("ryw-dup", limit=1000)
    assert [(r.run_id, r.status) for r in runs if r.idempotency_key == key] == [(first.run_id, RunStatus.QUEUED)]


async def test_a_queued_run_refused_at_admission_is_recorded_rejected(
        runtime: Runtime, monkeypatch: pytest.MonkeyPatch, autopilot_on: None) -> None:
    """A kill switch flipped between the request and admission: the queued record becomes rejected, keyless."""
    client = runtime.client()
    handle = await client.request_job("ryw-off", HEALTHCHECK, {}, idempotency_key=f"off-{uuid.uuid4().hex}")
    assert (await client.get_run(handle.run_id)).status is RunStatus.QUEUED
    monkeypatch.setenv(Flag.AUTOPILOT_JOBS.value, "0")
    from workers.worker import build_workers

    workers = build_workers(runtime)
    tasks = [asyncio.ensure_future(w.run()) for w in workers]
    try:
        record = await until_final(runtime, handle.run_id)
    finally:
        await asyncio.gather(*(w.shutdown() for w in workers))
        await asyncio.gather(*tasks, return_exceptions=True)
    assert record.status is RunStatus.REJECTED and "JOBFORGE_AUTOPILOT_JOBS_ENABLED" in record.error
    assert record.idempotency_key is None and record.finished_at is not None


async def test_a_raw_temporal_start_is_recorded_by_admission(runtime: Runtime, worker: None,
                                                             autopilot_on: None) -> None:
    """A start straight through Temporal has no queued record; admission writes it, and it finishes as usual."""
    assert runtime.temporal is not None
    tenant = "ryw-raw"
    workflow_id = f"raw-{uuid.uuid4().hex}"
    job = JobRun(tenant_id=tenant, template_key=HEALTHCHECK, actor="raw")
    handle = await runtime.temporal.start_workflow(
        HEALTHCHECK, job, id=workflow_id, task_queue=runtime.settings.task_queue,
        search_attributes=run_search_attributes(tenant, HEALTHCHECK, ""))
    try:
        await handle.result()
    except WorkflowFailureError as exc:
        raise AssertionError(f"the raw start failed: {exc.cause}") from None
    record = await runtime.client().get_run(workflow_id)
    assert record.status is RunStatus.SUCCEEDED and record.run_id == handle.result_run_id


async def test_a_run_terminated_before_admission_is_not_left_queued(runtime: Runtime, api: httpx.AsyncClient,
                                                                   autopilot_on: None) -> None:
    """With no worker, a requested run is terminated (or cancelled) in Temporal: it never reaches admission,
    and its queued record becomes cancelled when it is read (SDK, HTTP) or swept, with the reason."""
    assert runtime.temporal is not None
    tenant, key = await key_for(runtime, ["jobs:*", "runs:read"])
    client = runtime.client()
    terminated, cancelled, open_ = [await client.request_job(tenant, HEALTHCHECK, {}) for _ in range(3)]
    await runtime.temporal.get_workflow_handle(terminated.workflow_id).terminate(reason="operator")
    await runtime.temporal.get_workflow_handle(cancelled.workflow_id).cancel()
    assert (await runtime.store.get_run(terminated.run_id)).status is RunStatus.QUEUED  # nothing has looked yet

    read = await client.get_run(terminated.run_id)
    assert read.status is RunStatus.CANCELLED and read.finished_at is not None
    assert read.error == "its workflow was terminated in Temporal before admission"
    got = await api.get(f"/v1/runs/{cancelled.run_id}", headers={"Authorization": f"Bearer {key}"})
    # a cancel request stays pending until a worker takes the workflow task: this run is still open
    assert got.status_code == 200 and got.json()["status"] == "queued"
    await runtime.temporal.get_workflow_handle(cancelled.workflow_id).terminate(reason="operator")

    swept = await sweep(runtime.store, runtime.temporal, 0, limit=10_000)
    assert cancelled.run_id in {r.run_id for r in swept} and open_.run_id not in {r.run_id for r in swept}
    assert (await runtime.store.get_run(cancelled.run_id)).status is RunStatus.CANCELLED
    assert (await client.get_run(open_.run_id)).status is RunStatus.QUEUED  # still open: admission will come


async def test_a_queued_record_without_a_workflow_is_closed(runtime: Runtime) -> None:
    """A queued record whose workflow Temporal does not know (deleted by retention, a lost start) becomes
    failed naming why, once; a record admission has moved on is left alone."""
    assert runtime.temporal is not None
    tenant = await new_tenant(runtime, "ryw-")
    ghost = str(uuid.uuid4())
    await runtime.store.record_queued(tenant_id=tenant, template_key=HEALTHCHECK, workflow_id=f"ghost-{ghost}",
                                      run_id=ghost,
                                      trace_id="t", actor="test", idempotency_key=None, input_hash="")
    settled = await settle(runtime.store, runtime.temporal, await runtime.store.get_run(ghost))
    assert (settled.status, settled.error) == (
        RunStatus.FAILED, "its workflow is not in Temporal (never started there, or deleted by retention)")
    assert await runtime.store.close_queued(ghost, RunStatus.CANCELLED, "again") is None
    assert (await runtime.store.get_run(ghost)).status is RunStatus.FAILED


def test_every_status_decodes_and_queued_is_not_final() -> None:
    """Records and histories written before `queued` existed decode; queued and running are the open states."""
    assert {s.value for s in RunStatus.final()} == {"succeeded", "failed", "rejected", "cancelled", "timed_out"}
    assert [RunStatus(v) for v in ("running", "succeeded", "queued")] == [
        RunStatus.RUNNING, RunStatus.SUCCEEDED, RunStatus.QUEUED]
