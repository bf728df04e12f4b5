"""`jobforge-api` and `jobforge-worker` as processes, driven by the CLI, the HTTP SDK, raw sockets and a
schemathesis fuzz of the OpenAPI document."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from temporalio.testing import WorkflowEnvironment

from jobforge.client import JobForgeClient
from jobforge.models import EventEnvelope, RunStatus
from tests.support.procs import api_and_worker, env_with, free_port, jobforge

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(pg_url: str, temporal_env: WorkflowEnvironment,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """An API process and a worker process on their own task queue, every feature flag on, a tenant and key."""
    home = tmp_path_factory.mktemp("api-home")
    port = free_port()
    env = env_with({
        "JOBFORGE_TEMPORAL_ADDRESS": str(temporal_env.client.service_client.config.target_host),
        "JOBFORGE_DATABASE_URL": pg_url, "JOBFORGE_HOME": str(home),
        "JOBFORGE_TASK_QUEUE": f"api-e2e-{uuid.uuid4().hex[:8]}", "JOBFORGE_LOG_FORMAT": "json",
        "JOBFORGE_RATE_LIMIT_PER_MINUTE": "100000", "JOBFORGE_MAX_PAYLOAD_BYTES": "65536",
        # the fuzz draws hundreds of refusals (404, 422, feature_disabled) from one key: past the default burst
        # of 20 each would be held about a second (refusal pacing, tested in tests/integration/test_refusal_pacing.py);
        # the pacer still counts every refusal here, it just never reaches its burst
        "JOBFORGE_REFUSAL_PACING_BURST": "100000",
        **dict.fromkeys(("JOBFORGE_AUTOPILOT_JOBS_ENABLED", "JOBFORGE_EVENTS_ENABLED",
                         "JOBFORGE_AUDIT_LOGGING_ENABLED", "JOBFORGE_RATE_LIMITING_ENABLED",
                         "JOBFORGE_SECURITY_VALIDATION_ENABLED"), "1"),
    })
    with api_and_worker(env, home, port, 30) as base:
        tenant = f"e2e-{uuid.uuid4().hex[:6]}"
        assert jobforge("tenants", "create", tenant, env=env).returncode == 0
        made = jobforge("keys", "create", "--tenant", tenant, "--scopes", "jobs:*,events:write,runs:read,"
                        "artifacts:read,audit:read", "--json", env=env)
        assert made.returncode == 0, made.stderr
        key = json.loads(made.stdout)
        yield {"base": base, "env": env, "tenant": tenant, "key": key, "home": home, "port": port, "pg_url": pg_url}


def test_cli_keys_show_the_secret_once(stack: dict[str, Any]) -> None:
    """`keys create` printed the secret; `keys list` never does; `keys revoke` makes the API refuse it."""
    env, tenant, key = stack["env"], stack["tenant"], stack["key"]
    assert key["secret"].startswith("jfk_") and key["scopes"] == sorted(key["scopes"])
    listed = jobforge("keys", "list", "--tenant", tenant, "--json", env=env)
    assert key["key_id"] in listed.stdout and key["secret"] not in listed.stdout
    extra = json.loads(jobforge("keys", "create", "--tenant", tenant, "--scopes", "runs:read", "--json",
                                env=env).stdout)
    assert httpx.get(f"{stack['base']}/v1/runs/x", headers={"Authorization": f"Bearer {extra['secret']}"}
                     ).status_code == 404
    assert jobforge("keys", "revoke", extra["key_id"], env=env).returncode == 0
    assert httpx.get(f"{stack['base']}/v1/runs/x", headers={"Authorization": f"Bearer {extra['secret']}"}
                     ).status_code == 401
    assert jobforge("tenants", "create", tenant, env=env).returncode == 2


async def test_http_sdk_runs_a_job_end_to_end(stack: dict[str, Any]) -> None:
    """Through the API process, a job runs on the worker process; events dedupe; the audit chain verifies."""
    async with JobForgeClient(stack["base"], stack["key"]["secret"]) as sdk:
        handle = await sdk.request_job(stack["tenant"], "autopilot.jobforge.healthcheck", {})
        deadline = time.monotonic() + 30
        status = (await sdk.get_run(handle.run_id)).status  # readable at once: queued until admitted
        while not status.is_final:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
            status = (await sdk.get_run(handle.run_id)).status
        assert status is RunStatus.SUCCEEDED
        event = EventEnvelope(tenant_id=stack["tenant"], event_id="e-1", event_type="order.created")
        first, second = await sdk.submit_event(event), await sdk.submit_event(event)
        assert (first.duplicate, second.duplicate) == (False, True)
        assert second.original_trace_id == first.trace_id
        entries = await sdk.list_audit()
    assert {e["action"] for e in entries} >= {"jobs.request", "events.submit"}
    verified = jobforge("audit", "verify", "--tenant", stack["tenant"], "--json", env=stack["env"])
    assert verified.returncode == 0 and json.loads(verified.stdout)["ok"] is True
    listed = jobforge("audit", "list", "--tenant", stack["tenant"], "--json", env=stack["env"])
    assert len(json.loads(listed.stdout)) == len(entries)


def test_audit_verify_names_a_tampered_row(stack: dict[str, Any]) -> None:
    """After a row is edited in the database, `jobforge audit verify` exits 1 naming it."""
    tenant = f"tamper-{uuid.uuid4().hex[:6]}"
    env = {**stack["env"], "JOBFORGE_RATE_LIMIT_PER_MINUTE": "100000"}
    assert jobforge("tenants", "create", tenant, env=env).returncode == 0
    for _ in range(3):
        jobforge("tokens", "issue", "--tenant", tenant, "--template", "autopilot.jobforge.healthcheck", env=env)
    with psycopg.connect(stack["pg_url"].replace("postgresql+psycopg", "postgresql"), autocommit=True) as conn:
        conn.execute("UPDATE audit_log SET reason = 'nothing to see' WHERE tenant_id = %s AND seq = 2", (tenant,))
    verdict = jobforge("audit", "verify", "--tenant", tenant, env=env)
    assert verdict.returncode == 1
    assert "entry 2 was edited" in verdict.stderr


def raw_http(port: int, head: bytes, body_chunks: list[bytes], pause: float = 0.0) -> tuple[int, float]:
    """Send a request over a socket; return the status and how long the answer took."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(head)
        status_line = b""
        for chunk in body_chunks:
            try:
                sock.sendall(chunk)
            except OSError:
                break  # the server answered and closed: it did not read the rest
            if pause:
                time.sleep(pause)
        status_line = sock.recv(64)
        return int(status_line.split()[1]), time.monotonic() - started


def test_oversized_bodies_are_refused_before_being_read(stack: dict[str, Any]) -> None:
    """A declared 1 GB body is refused at once; a chunked body is cut off past the limit (413 both)."""
    auth = f"Authorization: Bearer {stack['key']['secret']}\r\n".encode()
    head = (b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + auth +
            b"Content-Length: 1000000000\r\n\r\n")
    status, seconds = raw_http(stack["port"], head, [])
    assert status == 413 and seconds < 2
    head = (b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + auth +
            b"Transfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n%s\r\n" % (16384, b" " * 16384)
    status, _ = raw_http(stack["port"], head, [chunk] * 64)
    assert status == 413


def test_fuzz_the_openapi_document_finds_no_server_error(stack: dict[str, Any]) -> None:
    """Schemathesis, driven by /openapi.json with a valid key, gets no 5xx from any operation."""
    schema = schemathesis.openapi.from_url(f"{stack['base']}/openapi.json")
    headers = {"Authorization": f"Bearer {stack['key']['secret']}"}
    failures: list[str] = []
    calls = 0
    for result in schema.get_all_operations():
        operation = result.ok()

        @hypothesis_settings(max_examples=12, deadline=None, database=None,
                             suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def check(case: schemathesis.Case) -> None:
            nonlocal calls
            response = case.call(headers=headers, timeout=15)
            calls += 1
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:200]}")

        check()
    assert calls > 50
    assert failures == []
    assert not_a_server_error is not None
