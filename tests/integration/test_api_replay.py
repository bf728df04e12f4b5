"""`GET /v1/runs/{id}/replay` through the HTTP API (in process, ASGI) with tenant API keys."""

from __future__ import annotations

import io
import tarfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest

from jobforge.models import RunHandleInfo
from shared.flags import Flag
from shared.replay.service import verify_bundle
from workers.api import create_app
from workers.runtime import Runtime
from workflows import discover

pytestmark = pytest.mark.integration

HEALTHCHECK = "autopilot.jobforge.healthcheck"
PROBLEM = "application/problem+json"


@pytest.fixture
async def api(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[httpx.AsyncClient]:
    for flag in (Flag.AUTOPILOT_JOBS, Flag.REPLAY_PACK):
        monkeypatch.setenv(flag.value, "1")
    app = create_app(runtime.settings, runtime)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
        yield client


async def key_for(runtime: Runtime, scopes: list[str]) -> dict[str, str]:
    tenant = f"replay-{uuid.uuid4().hex[:8]}"
    await runtime.gate.tenants.create_tenant(tenant)
    issued = await runtime.gate.tenants.create_key(tenant, scopes)
    return {"Authorization": f"Bearer {issued.secret}"}


async def finished_run(api: httpx.AsyncClient, runtime: Runtime, auth: dict[str, str]) -> RunHandleInfo:
    created = await api.post("/v1/jobs", json={"template_key": HEALTHCHECK,
                                               "inputs": {"task_queues": [runtime.settings.task_queue]}},
                             headers=auth)
    assert created.status_code == 202, created.text
    handle = RunHandleInfo(**created.json())
    await runtime.client().result(handle)
    return handle


async def test_replay_bundle_is_served_as_tar_and_json(api: httpx.AsyncClient, runtime: Runtime, worker: None,
                                                       tmp_path: Path) -> None:
    """A tenant's finished run is served as a reproducible gzip tar that verifies offline, or as replay.json."""
    auth = await key_for(runtime, ["jobs:request", "runs:read"])
    handle = await finished_run(api, runtime, auth)
    first = await api.get(f"/v1/runs/{handle.run_id}/replay", headers=auth)
    assert first.status_code == 200, first.text
    assert first.headers["content-type"] == "application/gzip"
    assert first.headers["content-disposition"] == f'attachment; filename="replay-{handle.run_id}.tar.gz"'
    again = await api.get(f"/v1/runs/{handle.workflow_id}/replay?format=tar", headers=auth)
    assert again.content == first.content and again.headers["etag"] == first.headers["etag"]
    with tarfile.open(fileobj=io.BytesIO(first.content), mode="r:gz") as tar:
        assert sorted(tar.getnames()) == [f"replay-{handle.run_id}/manifest.json",
                                          f"replay-{handle.run_id}/replay.json"]
        tar.extractall(tmp_path, filter="data")
    bundle_dir = tmp_path / f"replay-{handle.run_id}"
    verified = await verify_bundle(bundle_dir, discover())
    assert verified.ok and verified.determinism == "ok", verified

    as_json = await api.get(f"/v1/runs/{handle.run_id}/replay", params={"format": "json"}, headers=auth)
    assert as_json.status_code == 200 and as_json.headers["content-type"] == "application/json"
    assert as_json.content == (bundle_dir / "replay.json").read_bytes()
    document = orjson.loads(as_json.content)
    assert document["run"]["run_id"] == handle.run_id and document["outcome"]["status"] == "completed"
    assert as_json.headers["etag"] == first.headers["etag"]
    bad = await api.get(f"/v1/runs/{handle.run_id}/replay", params={"format": "zip"}, headers=auth)
    assert bad.status_code == 422 and bad.headers["content-type"] == PROBLEM


async def test_replay_is_tenant_scoped_and_gated(api: httpx.AsyncClient, runtime: Runtime, worker: None,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Another tenant gets 404, a key without runs:read 403 insufficient_scope, and with REPLAY_PACK_ENABLED
    off the owner gets 403 feature_disabled — all problem+json."""
    owner = await key_for(runtime, ["jobs:request", "runs:read"])
    handle = await finished_run(api, runtime, owner)
    intruder = await key_for(runtime, ["*:*"])
    for ident in (handle.run_id, handle.workflow_id):
        foreign = await api.get(f"/v1/runs/{ident}/replay", headers=intruder)
        assert foreign.status_code == 404 and foreign.headers["content-type"] == PROBLEM
        assert foreign.json()["code"] == "run_not_found"
    reader_of_artifacts = await key_for(runtime, ["artifacts:read"])
    denied = await api.get(f"/v1/runs/{handle.run_id}/replay", headers=reader_of_artifacts)
    assert denied.status_code == 403 and denied.json()["details"]["missing"] == ["runs:read"]
    monkeypatch.setenv(Flag.REPLAY_PACK.value, "0")
    off = await api.get(f"/v1/runs/{handle.run_id}/replay", headers=owner)
    assert off.status_code == 403 and off.headers["content-type"] == PROBLEM
    assert off.json()["code"] == "feature_disabled" and "REPLAY_PACK_ENABLED" in off.json()["detail"]
