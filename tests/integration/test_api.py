"""The HTTP ingress in process (ASGI): authentication, scopes, tenancy, limits, problems, the HTTP SDK."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import psycopg
import pytest

from jobforge.client import JobForgeClient
from jobforge.errors import FeatureDisabled, InsufficientScope, RunNotFound, Unauthenticated
from jobforge.models import EventEnvelope, RunStatus
from shared.flags import Flag
from shared.settings import Settings
from workers.api import create_app
from workers.runtime import Runtime

pytestmark = pytest.mark.integration

HEALTHCHECK = "autopilot.jobforge.healthcheck"
PROBLEM = "application/problem+json"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.replace(rate_limit_per_minute=5, max_payload_bytes=20_000)


@pytest.fixture
async def api(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[httpx.AsyncClient]:
    for flag in (Flag.AUTOPILOT_JOBS, Flag.AUDIT_LOGGING, Flag.SECURITY_VALIDATION):
        monkeypatch.setenv(flag.value, "1")
    app = create_app(runtime.settings, runtime)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
        yield client


async def tenant_with_key(runtime: Runtime, scopes: list[str]) -> tuple[str, str]:
    tenant = f"api-{uuid.uuid4().hex[:8]}"
    await runtime.gate.tenants.create_tenant(tenant)
    issued = await runtime.gate.tenants.create_key(tenant, scopes)
    return tenant, issued.secret


def is_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The answer is a problem+json ``status`` with ``code``: its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    return body


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_health_and_openapi(api: httpx.AsyncClient) -> None:
    """/healthz answers without a key; /openapi.json lists every endpoint with bearer security."""
    assert (await api.get("/healthz")).json() == {"status": "ok", "database": "ok"}
    spec = (await api.get("/openapi.json")).json()
    assert {"/v1/events", "/v1/jobs", "/v1/runs/{ident}", "/v1/runs/{ident}/artifacts", "/v1/audit",
            "/healthz"} <= set(spec["paths"])
    assert "HTTPBearer" in spec["components"]["securitySchemes"]


async def test_authentication_failures_are_problems(api: httpx.AsyncClient, runtime: Runtime) -> None:
    """No key, a malformed key and a revoked key all get 401 problem+json with WWW-Authenticate."""
    _, key = await tenant_with_key(runtime, ["*:*"])
    responses = [await api.get("/v1/audit"), await api.get("/v1/audit", headers=auth("jfk_nope"))]
    key_id = key.split("_")[1]
    await runtime.gate.tenants.revoke_key(key_id)
    responses.append(await api.get("/v1/audit", headers=auth(key)))
    for response in responses:
        assert response.status_code == 401
        assert response.headers["content-type"] == PROBLEM
        assert response.headers["www-authenticate"].startswith("Bearer")
        body = response.json()
        assert body["code"] == "unauthenticated" and body["status"] == 401 and "traceback" not in response.text


async def test_job_lifecycle_and_scope_denial(api: httpx.AsyncClient, runtime: Runtime, worker: None) -> None:
    """A key with jobs:* starts a run that completes; the run is readable with runs:read; a key without
    jobs:request gets 403 insufficient_scope naming it."""
    tenant, key = await tenant_with_key(runtime, ["jobs:*", "runs:read", "artifacts:read", "audit:read"])
    created = await api.post("/v1/jobs", json={"template_key": HEALTHCHECK, "idempotency_key": "k1"},
                             headers=auth(key))
    assert created.status_code == 202, created.text
    handle = created.json()
    await runtime.client().result(__import__("jobforge.models", fromlist=["RunHandleInfo"]).RunHandleInfo(**handle))
    again = await api.post("/v1/jobs", json={"template_key": HEALTHCHECK}, headers={**auth(key),
                                                                                    "Idempotency-Key": "k1"})
    assert again.status_code == 200 and again.json()["run_id"] == handle["run_id"]
    run = await api.get(f"/v1/runs/{handle['run_id']}", headers=auth(key))
    assert run.status_code == 200 and run.json()["status"] == RunStatus.SUCCEEDED.value
    by_workflow = await api.get(f"/v1/runs/{handle['workflow_id']}", headers=auth(key))
    assert by_workflow.json()["run_id"] == handle["run_id"]
    assert (await api.get(f"/v1/runs/{handle['run_id']}/artifacts", headers=auth(key))).json() == []
    audit = (await api.get("/v1/audit", headers=auth(key))).json()
    assert [e["decision"] for e in audit] == ["allow"] and audit[0]["tenant_id"] == tenant

    _, reader = await tenant_with_key(runtime, ["runs:read"])
    denied = await api.post("/v1/jobs", json={"template_key": HEALTHCHECK}, headers=auth(reader))
    assert denied.status_code == 403
    assert denied.json()["details"]["missing"] == ["jobs:request"]
    assert 'error="insufficient_scope"' in denied.headers["www-authenticate"]


async def test_cross_tenant_access_fails_on_every_endpoint(api: httpx.AsyncClient, runtime: Runtime,
                                                           worker: None) -> None:
    """Tenant B cannot read A's run, artifacts or audit (404 / own entries only), nor act as A."""
    tenant_a, key_a = await tenant_with_key(runtime, ["*:*"])
    tenant_b, key_b = await tenant_with_key(runtime, ["*:*"])
    handle = (await api.post("/v1/jobs", json={"template_key": HEALTHCHECK}, headers=auth(key_a))).json()
    for ident in (handle["run_id"], handle["workflow_id"]):
        for path in (f"/v1/runs/{ident}", f"/v1/runs/{ident}/artifacts"):
            foreign = await api.get(path, headers=auth(key_b))
            assert foreign.status_code == 404, path
            assert foreign.json()["code"] == "run_not_found"
    assert all(e["tenant_id"] == tenant_b for e in (await api.get("/v1/audit", headers=auth(key_b))).json())
    as_a = await api.post("/v1/jobs", json={"template_key": HEALTHCHECK, "tenant_id": tenant_a},
                          headers=auth(key_b))
    assert as_a.status_code == 400
    event_as_a = await api.post("/v1/events", json={"event_id": "e", "event_type": "x.y", "tenant_id": tenant_a},
                                headers=auth(key_b))
    assert event_as_a.status_code in (400, 403)
    token_as_b = await api.post("/v1/policy-tokens", json={"template_key": HEALTHCHECK}, headers=auth(key_b))
    assert token_as_b.status_code in (400, 403)
    assert all(e["tenant_id"] == tenant_a for e in (await api.get("/v1/audit", headers=auth(key_a))).json())


async def test_rate_limit_answers_429_with_headers(api: httpx.AsyncClient, runtime: Runtime,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Past 5/min the API answers 429 with Retry-After, RateLimit and RateLimit-Policy."""
    monkeypatch.setenv(Flag.RATE_LIMITING.value, "1")
    _, key = await tenant_with_key(runtime, ["*:*"])
    statuses = []
    for _ in range(6):
        response = await api.post("/v1/jobs", json={"template_key": HEALTHCHECK}, headers=auth(key))
        statuses.append(response.status_code)
    assert statuses == [202] * 5 + [429]
    assert int(response.headers["retry-after"]) >= 1
    assert response.headers["ratelimit"].startswith('"tenant";r=0;')
    assert response.headers["ratelimit-policy"] == '"tenant";q=5;w=60'
    assert response.json()["details"]["retry_after"] > 0


async def test_events_flag_dedupe_and_duplicate_answer(api: httpx.AsyncClient, runtime: Runtime,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Events answer FeatureDisabled while the flag is off; then 202, and a copy answers 200 pointing at it."""
    _, key = await tenant_with_key(runtime, ["events:write"])
    event = {"event_id": "evt-1", "event_type": "order.created", "trace_id": "first", "payload": {"n": 1}}
    off = await api.post("/v1/events", json=event, headers=auth(key))
    assert off.status_code == 403 and off.json()["details"]["flag"] == Flag.EVENTS.value
    monkeypatch.setenv(Flag.EVENTS.value, "1")
    first = await api.post("/v1/events", json=event, headers=auth(key))
    copy = await api.post("/v1/events", json={**event, "trace_id": "second"}, headers=auth(key))
    assert (first.status_code, copy.status_code) == (202, 200)
    assert copy.json()["duplicate"] is True and copy.json()["original_trace_id"] == "first"
    assert copy.json()["first_seen_at"] == first.json()["first_seen_at"]


async def test_oversized_and_deep_bodies(api: httpx.AsyncClient, runtime: Runtime) -> None:
    """A declared or streamed body over the limit is 413; a too-deep body is 422 naming the path."""
    _, key = await tenant_with_key(runtime, ["*:*"])
    declared = await api.post("/v1/jobs", content=b"{}", headers={**auth(key), "Content-Length": "50000000"})
    assert declared.status_code == 413 and declared.json()["code"] == "payload_too_large"

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b" " * 1000

    streamed = await api.post("/v1/jobs", content=chunks(), headers=auth(key))
    assert streamed.status_code == 413
    inputs: dict[str, object] = {}
    for _ in range(10):  # 11 levels of inputs: one more than the limit of 10
        inputs = {"k": inputs}
    refused = await api.post("/v1/jobs", json={"template_key": HEALTHCHECK, "inputs": inputs}, headers=auth(key))
    assert refused.status_code == 422
    assert refused.json()["details"]["limit"] == "max_depth"
    assert refused.json()["details"]["path"] == "$.inputs" + ".k" * 10


async def test_http_sdk_raises_the_same_typed_errors(api: httpx.AsyncClient, runtime: Runtime, worker: None,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The HTTP transport answers runs and raises the same error classes as the Temporal transport."""
    tenant, key = await tenant_with_key(runtime, ["jobs:*", "runs:read", "artifacts:read"])
    transport = api._transport  # the ASGI app under test
    async with JobForgeClient("http://api", key, transport=transport) as sdk:
        handle = await sdk.request_job(tenant, HEALTHCHECK, {}, trace_id="sdk-trace")
        await runtime.client().result(handle)
        record = await sdk.get_run(handle.run_id)
        assert record.status is RunStatus.SUCCEEDED and record.trace_id == "sdk-trace"
        assert list(await sdk.list_artifacts(handle.run_id)) == []
        with pytest.raises(RunNotFound):
            await sdk.get_run("nope")
        with pytest.raises(FeatureDisabled):
            await sdk.submit_event(EventEnvelope(tenant_id=tenant, event_id="e1", event_type="a.b"))
        monkeypatch.setenv(Flag.EVENTS.value, "1")
        with pytest.raises(InsufficientScope) as info:
            await sdk.submit_event(EventEnvelope(tenant_id=tenant, event_id="e1", event_type="a.b"))
        assert info.value.missing == ["events:write"]
    async with JobForgeClient("http://api", "jfk_bad", transport=transport) as bad:
        with pytest.raises(Unauthenticated):
            await bad.get_run(handle.run_id)


async def test_a_database_restart_answers_503_then_recovers(api: httpx.AsyncClient, runtime: Runtime,
                                                            monkeypatch: pytest.MonkeyPatch, pg_url: str) -> None:
    """Pooled connections killed under the API (a PostgreSQL restart) give 503 + Retry-After, never 500; it heals."""
    monkeypatch.setenv(Flag.EVENTS.value, "1")
    _, key = await tenant_with_key(runtime, ["events:write"])
    first = await api.post("/v1/events", json={"event_id": "before", "event_type": "db.restart", "payload": {}},
                           headers=auth(key))
    assert first.status_code == 202, first.text
    with psycopg.connect(pg_url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE datname = current_database() AND pid <> pg_backend_pid()")
    answers = []
    for attempt in range(4):
        response = await api.post("/v1/events", json={"event_id": f"after-{attempt}", "event_type": "db.restart",
                                                      "payload": {}}, headers=auth(key))
        answers.append(response.status_code)
        if response.status_code == 202:
            break
        assert response.status_code == 503, response.text
        assert response.json()["code"] == "store_unavailable" and response.headers["Retry-After"] == "1"
    assert answers[-1] == 202 and answers[0] == 503, answers
