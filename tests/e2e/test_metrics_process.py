"""The Prometheus endpoints of a `jobforge-worker` and a `jobforge-api` process, scraped after real activity."""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from jobforge.models import RunStatus, TriggerKind, TriggerSpec
from shared.flags import Flag
from shared.settings import Secret, Settings
from shared.triggers.service import TriggerService
from shared.verify.models import TEMPLATE_KEY as VERIFY
from tests.support.procs import ROOT, env_with, free_port, wait_for
from tests.support.verify_repos import explicit_repo
from workers.runtime import Runtime, open_runtime
from workers.stack import terminate

pytestmark = pytest.mark.e2e

HC = "autopilot.jobforge.healthcheck"
FLAGS = (Flag.EVENTS, Flag.TRIGGERS, Flag.AUTOPILOT_JOBS, Flag.RATE_LIMITING, Flag.VERIFY_PACK)
RATE_LIMIT = 10
_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels`` (0 when there is none)."""
    total = 0.0
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None or match.group(1) != name:
            continue
        found = dict(_LABEL.findall(match.group(2) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(match.group(3))
    return total


def has(text: str, name: str, **labels: str) -> bool:
    return any(line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items())
               for line in text.splitlines())


@dataclass
class Stack:
    settings: Settings
    api: str
    api_metrics: str
    worker_metrics: str
    repos: Path


def scrape(bind: str) -> str:
    response = httpx.get(f"http://{bind}/metrics", timeout=5)
    assert response.status_code == 200
    return response.text


def eventually(bind: str, check: Callable[[str], bool], what: str, timeout: float = 30) -> str:
    """The endpoint's text once ``check`` holds for it."""
    deadline = time.monotonic() + timeout
    while True:
        text = scrape(bind)
        if check(text):
            return text
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}:\n{text}")
        time.sleep(0.2)


def start(cmd: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


@pytest.fixture
async def stack(pg_url: str, temporal_env: WorkflowEnvironment, tmp_path: Path,
                monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Stack]:
    """A worker and an API process with metrics endpoints, every needed flag on, on this test's task queue."""
    for flag in FLAGS:
        monkeypatch.setenv(flag.value, "1")
    repos = tmp_path / "repos"
    repos.mkdir()
    api_port = free_port()
    api_bind, worker_bind = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    address = str(temporal_env.client.service_client.config.target_host)
    settings = Settings(home=tmp_path / "home", temporal_address=address, database_url=Secret(pg_url),
                        task_queue=f"metrics-{uuid.uuid4().hex[:8]}")
    env = env_with({
        "JOBFORGE_TEMPORAL_ADDRESS": settings.temporal_address, "JOBFORGE_DATABASE_URL": pg_url,
        "JOBFORGE_HOME": str(settings.home), "JOBFORGE_TASK_QUEUE": settings.task_queue,
        "JOBFORGE_LOG_FORMAT": "json", "JOBFORGE_RATE_LIMIT_PER_MINUTE": str(RATE_LIMIT),
        "JOBFORGE_WORKER_GRACEFUL_SHUTDOWN_SECONDS": "0.5", "JOBFORGE_VERIFY_ALLOWED_ROOTS": str(repos),
        "JOBFORGE_VERIFY_SANDBOX": "off", "JOBFORGE_QUEUE_DEPTH_INTERVAL_SECONDS": "0.3",
        "JOBFORGE_METRICS_BIND": worker_bind, "JOBFORGE_API_METRICS_BIND": api_bind,
        **{flag.value: "1" for flag in FLAGS},
    })
    procs = [start([sys.executable, "-m", "workers.api", "--port", str(api_port)], tmp_path / "api.log", env),
             start([sys.executable, "-m", "workers.worker"], tmp_path / "worker.log", env)]
    try:
        base = f"http://127.0.0.1:{api_port}"

        def healthy() -> bool:
            try:
                return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        await asyncio.to_thread(wait_for, healthy, 30, "the API")
        await asyncio.to_thread(wait_for, lambda: "worker_started" in (tmp_path / "worker.log").read_text(), 30,
                                "the worker")
        yield Stack(settings, base, api_bind, worker_bind, repos)
    finally:
        for proc in procs:
            await asyncio.to_thread(terminate, proc, 10)


async def bearer(rt: Runtime, tenant: str, scopes: list[str]) -> dict[str, str]:
    issued = await rt.gate.tenants.create_key(tenant, scopes)
    return {"Authorization": f"Bearer {issued.secret}"}


async def test_worker_and_api_endpoints_count_what_happened(stack: Stack) -> None:
    """After an admitted event, a duplicate, a scope denial, a rate-limit refusal, a trigger fire and a verify
    run, the API's endpoint counts the gate's decisions and the worker's counts trigger verdicts, admissions,
    verify step durations and queue backlog — next to the Temporal SDK's own metrics on each."""
    tenant, flood = f"m-{uuid.uuid4().hex[:8]}", f"f-{uuid.uuid4().hex[:8]}"
    async with open_runtime(stack.settings) as rt:
        assert rt.temporal is not None
        for name in (tenant, flood):
            await rt.gate.tenants.create_tenant(name)
        writer = await bearer(rt, tenant, ["jobs:*", "events:write", "runs:read"])
        reader = await bearer(rt, tenant, ["runs:read"])
        flooder = await bearer(rt, flood, ["events:write"])
        await TriggerService(rt.store.triggers, rt.temporal, rt.settings, rt.registry, rt.flags).create(
            TriggerSpec(tenant_id=tenant, name="orders", kind=TriggerKind.EVENT, event_pattern="order.*",
                        template_key=HC, inputs={"task_queues": [stack.settings.task_queue]}))
    repo = explicit_repo(stack.repos, "tiny", {"lint": "true", "test": "echo ok"})
    event = {"event_id": "o-1", "event_type": "order.paid", "payload": {"n": 1}}
    async with httpx.AsyncClient(base_url=stack.api, timeout=30) as api:
        assert (await api.post("/v1/events", json=event, headers=writer)).status_code == 202
        assert (await api.post("/v1/events", json=event, headers=writer)).status_code == 200
        assert (await api.post("/v1/events", json=event, headers=reader)).status_code == 403
        statuses = [(await api.post("/v1/events", json={**event, "event_id": f"x-{i}"}, headers=flooder)).status_code
                    for i in range(RATE_LIMIT + 1)]
        assert statuses.count(429) == 1 and statuses[-1] == 429
        started = await api.post("/v1/jobs", headers=writer, json={
            "template_key": VERIFY, "inputs": {"repo_path": str(repo), "options": {"install": False}}})
        assert started.status_code == 202, started.text
        run_id = started.json()["workflow_id"]
        deadline = time.monotonic() + 30
        while True:
            got = await api.get(f"/v1/runs/{run_id}", headers=writer)
            if got.status_code == 200 and RunStatus(got.json()["status"]).is_final:
                break
            assert time.monotonic() < deadline, got.text
            await asyncio.sleep(0.2)
        assert got.json()["status"] == RunStatus.SUCCEEDED.value, got.text

    api_text = scrape(stack.api_metrics)
    assert value(api_text, "jobforge_events_total", decision="admitted", reason="admitted") == 1 + RATE_LIMIT
    assert value(api_text, "jobforge_events_total", decision="admitted", reason="duplicate") == 1
    assert value(api_text, "jobforge_events_total", decision="denied", reason="insufficient_scope") == 1
    assert value(api_text, "jobforge_events_total", decision="denied", reason="rate_limited") == 1
    assert value(api_text, "jobforge_rate_limited_total", action="events.submit") == 1
    assert value(api_text, "jobforge_dedupe_hits_total") == 1
    assert value(api_text, "jobforge_job_admissions_total", stage="gate", decision="allowed") == 1
    assert has(api_text, "jobforge_events_total", jobforge_process="jobforge-api")
    # the SDK's own: the job's start, and the events handed to their tenants' routers
    assert value(api_text, "temporal_request_total", operation="StartWorkflowExecution") >= 1
    assert value(api_text, "temporal_request_total", operation="SignalWithStartWorkflowExecution") >= 2

    worker_text = await asyncio.to_thread(eventually, stack.worker_metrics, lambda text: (
        value(text, "jobforge_trigger_decisions_total", verdict="fire", source="event") == 1
        and value(text, "jobforge_event_routing_total", outcome="routed") == 1 + RATE_LIMIT
        and has(text, "jobforge_task_queue_backlog", task_queue=stack.settings.verify_queue, kind="activity")),
        "the trigger decision, every admitted event routed and the backlog gauge")
    assert value(worker_text, "jobforge_job_admissions_total", stage="gate", decision="allowed") == 1  # the fire
    # the admitted event and the flood's admitted ones, each routed once by its tenant's router
    assert value(worker_text, "jobforge_event_routing_total", outcome="routed") == 1 + RATE_LIMIT
    assert value(worker_text, "jobforge_job_admissions_total", stage="run", decision="allowed") == 2
    for step in ("lint", "test"):
        assert value(worker_text, "jobforge_verify_step_duration_seconds_count", step=step, status="passed") == 1
        assert value(worker_text, "jobforge_verify_step_duration_seconds_bucket", step=step, status="passed",
                     le="+Inf") == 1
    assert has(worker_text, "jobforge_verify_step_duration_seconds_bucket", le="0.5")  # seconds, not ms
    for queue in (stack.settings.task_queue, stack.settings.verify_queue):
        for kind in ("workflow", "activity"):
            assert has(worker_text, "jobforge_task_queue_backlog", task_queue=queue, kind=kind)
    assert value(worker_text, "temporal_workflow_completed_total") >= 2  # fired run, verify run (routers stay open)
    assert has(worker_text, "temporal_num_pollers", jobforge_process="jobforge-worker")


def test_worker_refuses_a_busy_metrics_port(tmp_path: Path) -> None:
    """A worker whose metrics address is taken exits 2 with telemetry_unavailable naming it, before connecting."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        bind = f"127.0.0.1:{busy.getsockname()[1]}"
        env = env_with({"JOBFORGE_HOME": str(tmp_path), "JOBFORGE_LOG_FORMAT": "json",
                        "JOBFORGE_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
                        "JOBFORGE_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none"})
        done = subprocess.run([sys.executable, "-m", "workers.worker", "--metrics-bind", bind], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "telemetry_unavailable" in done.stdout + done.stderr and bind in done.stdout + done.stderr
