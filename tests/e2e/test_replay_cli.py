"""`jobforge replay export|verify|dry-run` as a user runs them, against a real worker process."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest

from shared.flags import Flag
from shared.replay.service import DryRunResult, ExportResult, VerifyResult
from shared.settings import Settings
from tests.support.procs import env_with, jobforge, start_worker, wait_for
from workers.runtime import open_runtime

pytestmark = pytest.mark.e2e

HC = "autopilot.jobforge.healthcheck"
FLAGS_ON = {Flag.AUTOPILOT_JOBS.value: "1", Flag.REPLAY_PACK.value: "1"}


async def test_export_verify_tamper_and_dry_run_from_the_cli(settings: Settings, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker captures the closed run; export writes a bundle (JSON on stdout), verify exits 0, dry-run
    exits 0 with the same outcome, and one changed byte makes verify exit 1 naming replay.json."""
    for flag, value in FLAGS_ON.items():
        monkeypatch.setenv(flag, value)
    log = tmp_path / "worker.log"
    worker = start_worker(settings, log, {**FLAGS_ON, "JOBFORGE_HISTORY_CAPTURE_INTERVAL_SECONDS": "0.2"})
    try:
        wait_for(lambda: "worker_started" in log.read_text(), 30, "the worker to start")
        async with open_runtime(settings) as rt:
            client = rt.client()
            tenant = f"cli-{uuid.uuid4().hex[:8]}"
            await rt.gate.tenants.create_tenant(tenant)
            handle = await client.request_job(tenant, HC,
                                              {"task_queues": [settings.task_queue]})
            await client.result(handle)
            replay_store = rt.store.replay
            for _ in range(100):  # the worker's archiver stores the history once the run has closed
                if await replay_store.history(handle.run_id) is not None:
                    break
                await asyncio.sleep(0.1)
            assert await replay_store.history(handle.run_id) is not None, log.read_text()[-2000:]
    finally:
        worker.terminate()
        await asyncio.to_thread(worker.wait, 30)

    # the worker is gone: from here on, only the user's shell, the store and the bundle on disk
    env = env_with({"JOBFORGE_DATABASE_URL": settings.database_url_value() or "",
                    "JOBFORGE_TEMPORAL_ADDRESS": settings.temporal_address, "JOBFORGE_HOME": str(settings.home),
                    **FLAGS_ON})
    out = tmp_path / "bundle"
    exported = await asyncio.to_thread(jobforge, "replay", "export", handle.run_id, "--out", str(out), "--tar",
                                       "--json", env=env)
    assert exported.returncode == 0, exported.stderr
    result = ExportResult.model_validate(json.loads(exported.stdout))
    assert result.run_id == handle.run_id and result.directory == str(out)
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "replay.json"]
    assert result.tarball == str(tmp_path / "bundle.tar.gz")

    for bundle in (out, Path(result.tarball)):  # the directory and the tarball answer the same
        verified = await asyncio.to_thread(jobforge, "replay", "verify", str(bundle), "--json", env=env)
        assert verified.returncode == 0, verified.stdout + verified.stderr
        report = VerifyResult.model_validate(json.loads(verified.stdout))
        assert report.ok and report.determinism == "ok" and report.input_hash == "ok" and report.events > 10

    dry = await asyncio.to_thread(jobforge, "replay", "dry-run", result.tarball, "--json", env=env)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    dry_run = DryRunResult.model_validate(json.loads(dry.stdout))  # stdout is the JSON document alone
    assert dry_run.ok and dry_run.replayed == dry_run.recorded and dry_run.recorded["status"] == "completed"
    plain = await asyncio.to_thread(jobforge, "replay", "dry-run", str(out), env=env)
    assert plain.returncode == 0 and "same outcome" in plain.stdout, plain.stdout + plain.stderr
    for answer in (dry, plain):  # the throwaway server's banner and logs reach neither stream
        assert "Temporal Server" not in answer.stdout + answer.stderr, answer.stdout + answer.stderr
    assert dry.stderr == "", dry.stderr

    not_a_bundle = tmp_path / "notes.tar.gz"
    not_a_bundle.write_bytes(b"just text")
    refused = await asyncio.to_thread(jobforge, "replay", "verify", str(not_a_bundle), env=env)
    assert refused.returncode == 2 and "bundle_invalid" in refused.stderr, refused.stderr

    path = out / "replay.json"
    data = bytearray(path.read_bytes())
    index = data.index(b'"status":"succeeded"') + len(b'"status":"succeede')
    data[index] = ord("D")  # one byte: still valid JSON, no longer the manifest's hash
    path.write_bytes(bytes(data))
    tampered = await asyncio.to_thread(jobforge, "replay", "verify", str(out), env=env)
    assert tampered.returncode == 1, tampered.stdout + tampered.stderr
    assert "file replay.json: sha256 mismatch" in tampered.stdout
    assert "bundle failed verification" in tampered.stdout
