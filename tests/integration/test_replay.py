"""Provenance capture and replay bundles against real Temporal and PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from jobforge.errors import FeatureDisabled
from jobforge.models import JobRun
from shared.flags import Flag
from shared.replay.service import ReplayService, dry_run_bundle, verify_bundle
from tests.support.changed_workflows import ChangedHealthcheck
from tests.support.tenants import ensure_tenants
from workers.runtime import Runtime
from workers.stack import temporal_binary
from workflows import discover

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
async def _tenants(runtime: Runtime) -> None:
    """The tenants these tests name exist."""
    await ensure_tenants(runtime, "replayco", "owner", "intruder", "rej")

HC = "autopilot.jobforge.healthcheck"


@pytest.fixture
def replay_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(Flag.AUTOPILOT_JOBS.value, "1")
    monkeypatch.setenv(Flag.REPLAY_PACK.value, "1")


async def finished_run(runtime: Runtime, tenant: str = "replayco") -> str:
    client = runtime.client()
    handle = await client.request_job(tenant, HC, {"task_queues": [runtime.settings.task_queue]})
    await client.result(handle)
    return handle.run_id


async def test_provenance_is_captured_at_run_start(runtime: Runtime, worker: None, replay_on: None) -> None:
    """A run stores real git provenance of JobForge's code, tool versions and a hashed environment."""
    run_id = await finished_run(runtime)
    provenance = await runtime.store.replay.provenance(run_id)
    assert provenance is not None
    code = provenance["jobforge_code"]
    assert code["is_repo"] and len(code["head_sha"]) == 40 and isinstance(code["dirty"], bool)
    assert provenance["tool_versions"]["python"] and "git" in provenance["tool_versions"]
    assert provenance["environment"]["variables"]["PATH"] != ""
    assert "/" not in "".join(provenance["environment"]["variables"].values())  # hashes, never values
    assert provenance["input_snapshot"]["input_hash"].startswith("sha256:")


async def test_export_verify_round_trip(runtime: Runtime, worker: None, replay_on: None, tmp_path: Path) -> None:
    """Exporting twice gives byte-identical files, and the bundle verifies: hashes and determinism."""
    run_id = await finished_run(runtime)
    service = ReplayService(runtime.store, runtime.temporal, runtime.flags)
    assert await service.capture_pending() >= 1
    first = await service.export(run_id, "replayco", tmp_path / "a", tarball=True)
    second = await service.export(run_id, "replayco", tmp_path / "again" / "a", tarball=True)
    for name in ("replay.json", "manifest.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "again" / "a" / name).read_bytes()
    assert (tmp_path / "a.tar.gz").read_bytes() == (tmp_path / "again" / "a.tar.gz").read_bytes()
    assert first.bundle_sha256 == second.bundle_sha256
    replay = orjson.loads((tmp_path / "a" / "replay.json").read_bytes())
    assert replay["outcome"]["status"] == "completed" and replay["outcome"]["result"]["healthy"] is True
    assert replay["provenance"]["run_id"] == run_id
    result = await verify_bundle(tmp_path / "a", discover())
    assert result.ok, result
    assert result.determinism == "ok" and result.input_hash == "ok" and result.events > 10
    assert len(await runtime.store.replay.bundles("replayco", run_id)) == 2


async def test_export_is_tenant_scoped_and_gated(runtime: Runtime, worker: None, replay_on: None,
                                                 tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another tenant cannot export the run, and with REPLAY_PACK_ENABLED off export is FeatureDisabled."""
    from jobforge.errors import RunNotFound

    run_id = await finished_run(runtime, "owner")
    service = ReplayService(runtime.store, runtime.temporal, runtime.flags)
    with pytest.raises(RunNotFound):
        await service.export(run_id, "intruder", tmp_path / "x")
    monkeypatch.delenv(Flag.REPLAY_PACK.value)
    with pytest.raises(FeatureDisabled) as info:
        await service.export(run_id, "owner", tmp_path / "y")
    assert info.value.flag == "REPLAY_PACK_ENABLED"


async def test_export_works_after_temporal_forgot_the_run(runtime: Runtime, worker: None, replay_on: None,
                                                          tmp_path: Path) -> None:
    """Once captured, a bundle no longer needs Temporal (as after retention deleted the history)."""
    run_id = await finished_run(runtime)
    service = ReplayService(runtime.store, runtime.temporal, runtime.flags)
    await service.capture_pending()
    offline = ReplayService(runtime.store, None, runtime.flags)
    await offline.export(run_id, None, tmp_path / "offline")
    assert (await verify_bundle(tmp_path / "offline", discover())).ok


async def test_tampered_bundle_names_the_file(runtime: Runtime, worker: None, replay_on: None,
                                              tmp_path: Path) -> None:
    """Changing one byte of replay.json fails verification naming that file."""
    run_id = await finished_run(runtime)
    await ReplayService(runtime.store, runtime.temporal, runtime.flags).export(run_id, None, tmp_path / "t")
    path = tmp_path / "t" / "replay.json"
    data = bytearray(path.read_bytes())
    index = data.index(b'"tenant_id":"replayco"') + len(b'"tenant_id":"replayc')
    data[index] = ord("0")  # one byte: still valid JSON, but the hash no longer matches
    path.write_bytes(bytes(data))
    result = await verify_bundle(tmp_path / "t", discover())
    assert not result.ok
    assert [p.path for p in result.files] == ["replay.json"]


async def test_nondeterministic_code_change_is_detected(runtime: Runtime, worker: None, replay_on: None,
                                                        tmp_path: Path) -> None:
    """Replaying against workflow code whose commands changed reports the divergence."""
    run_id = await finished_run(runtime)
    await ReplayService(runtime.store, runtime.temporal, runtime.flags).export(run_id, None, tmp_path / "n")
    result = await verify_bundle(tmp_path / "n", [ChangedHealthcheck])
    assert not result.ok and not result.files
    assert "Nondeterminism" in result.determinism or "nondetermin" in result.determinism.lower()


async def test_dry_run_reproduces_the_outcome(runtime: Runtime, worker: None, replay_on: None,
                                              tmp_path: Path) -> None:
    """A dry run re-executes the workflow with activities answered from history and gets the same outcome."""
    run_id = await finished_run(runtime)
    await ReplayService(runtime.store, runtime.temporal, runtime.flags).export(run_id, None, tmp_path / "d")
    result = await asyncio.wait_for(dry_run_bundle(tmp_path / "d", discover(), temporal_binary()), 60)
    assert result.ok, result
    assert result.activities_answered >= 5 and result.replayed["status"] == "completed"


async def test_rejected_run_bundle_verifies(runtime: Runtime, worker: None, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A run that failed admission exports and verifies too (its outcome is the typed failure)."""
    monkeypatch.setenv(Flag.REPLAY_PACK.value, "1")
    assert runtime.temporal is not None
    handle = await runtime.temporal.start_workflow(HC, JobRun(tenant_id="rej", template_key=HC),
                                                   id=f"rejected-{runtime.settings.task_queue}",
                                                   task_queue=runtime.settings.task_queue)
    with pytest.raises(Exception, match="failed"):
        await handle.result()
    service = ReplayService(runtime.store, runtime.temporal, runtime.flags)
    await service.export(handle.result_run_id or "", "rej", tmp_path / "r")
    replay = orjson.loads((tmp_path / "r" / "replay.json").read_bytes())
    assert replay["outcome"] == {"status": "failed", "failure": {
        "type": "feature_disabled", "message": replay["outcome"]["failure"]["message"]}}
    assert (await verify_bundle(tmp_path / "r", discover())).ok
    dry = await dry_run_bundle(tmp_path / "r", discover(), temporal_binary())
    assert dry.ok, dry


async def test_forgotten_runs_do_not_starve_the_archiver(runtime: Runtime, worker: None, replay_on: None) -> None:
    """Finished runs Temporal no longer has (closed before capture was on) do not keep a new run from being
    captured: the archiver takes the newest first."""
    from datetime import UTC, datetime, timedelta

    long_ago = datetime.now(UTC) - timedelta(days=3)
    async with runtime.store.connection() as conn:
        for i in range(3):
            await conn.execute(
                "INSERT INTO runs (run_id, workflow_id, tenant_id, template_key, status, trace_id, actor, "
                "input_hash, summary, error, finished_at) VALUES (%s, %s, 'replay-gone', %s, 'succeeded', '', '', "
                "'', '{}'::jsonb, '', %s)",
                (f"gone-{i}-{runtime.settings.task_queue}", f"gone/{i}", HC, long_ago - timedelta(minutes=i)))
    run_id = await finished_run(runtime)
    service = ReplayService(runtime.store, runtime.temporal, runtime.flags)
    assert await service.capture_pending(limit=3) >= 1
    assert await runtime.store.replay.history(run_id) is not None
