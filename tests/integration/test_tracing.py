"""Tracing end to end: an HTTP request through the real API, Temporal workflows and activities, one trace."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from temporalio.contrib.opentelemetry import TracingInterceptor

from jobforge.models import EventReceipt, RouteEventResult, RunHandleInfo, TriggerKind, TriggerSpec
from shared import tracing
from shared.flags import Flag
from shared.settings import Settings
from shared.triggers.service import TriggerService
from workers.api import create_app
from workers.runtime import Runtime, open_runtime
from workers.worker import build_workers

pytestmark = pytest.mark.integration

HC = "autopilot.jobforge.healthcheck"
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture
def flags_on(monkeypatch: pytest.MonkeyPatch) -> None:
    for flag in (Flag.EVENTS, Flag.TRIGGERS, Flag.AUTOPILOT_JOBS):
        monkeypatch.setenv(flag.value, "1")


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing turned on for this process through the processes' own configuration function."""
    exporter = InMemorySpanExporter()
    configured = tracing.configure("", "jobforge-test", exporter=exporter)
    assert configured is not None
    try:
        yield exporter
    finally:
        tracing.install(None)
        configured.shutdown()


async def serve(rt: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """JobForge's workers on the test's task queues plus the API app, both on ``rt``."""
    workers = build_workers(rt)
    tasks = [asyncio.ensure_future(w.run()) for w in workers]
    app = create_app(rt.settings, rt)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
            yield client
    finally:
        await asyncio.gather(*(w.shutdown() for w in workers))
        await asyncio.gather(*tasks, return_exceptions=True)


@pytest.fixture
async def traced(spans: InMemorySpanExporter, settings: Settings, flags_on: None) -> AsyncIterator[
        tuple[Runtime, httpx.AsyncClient]]:
    """A runtime connected after tracing was configured, its workers, and the API app over it."""
    async with open_runtime(settings) as rt:
        async for client in serve(rt):
            yield rt, client


async def key_for(rt: Runtime, scopes: list[str]) -> tuple[str, dict[str, str]]:
    tenant = f"tr-{uuid.uuid4().hex[:8]}"
    await rt.gate.tenants.create_tenant(tenant)
    issued = await rt.gate.tenants.create_key(tenant, scopes)
    return tenant, {"Authorization": f"Bearer {issued.secret}"}


def by_name(spans: tuple[ReadableSpan, ...], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, f"{name}: {[s.name for s in spans]}"
    return found[0]


def assert_one_tree(spans: tuple[ReadableSpan, ...], root: ReadableSpan) -> None:
    """Every span shares the root's trace id and reaches the root through its parents."""
    assert root.context is not None
    ids = {s.context.span_id: s for s in spans if s.context is not None}
    for span in spans:
        assert span.context is not None and span.context.trace_id == root.context.trace_id, span.name
        current = span
        while current is not root:
            assert current.parent is not None, f"{current.name} is not under {root.name}"
            current = ids[current.parent.span_id]


async def test_job_request_is_one_trace_from_ingress_to_activities(
        traced: tuple[Runtime, httpx.AsyncClient], spans: InMemorySpanExporter) -> None:
    """POST /v1/jobs with a caller's traceparent yields an ingress span carrying jobforge.trace_id, and the
    StartWorkflow, RunWorkflow and RunActivity spans of the run are its descendants in the caller's trace."""
    rt, api = traced
    _, headers = await key_for(rt, ["jobs:*"])
    response = await api.post("/v1/jobs", headers={**headers, "traceparent": f"00-{CALLER_TRACE}-00f067aa0ba902b7-01"},
                              json={"template_key": HC, "inputs": {"task_queues": [rt.settings.task_queue]}})
    assert response.status_code == 202, response.text
    handle = RunHandleInfo.model_validate_json(response.content)
    await rt.client().result(handle)
    finished = spans.get_finished_spans()
    ingress = by_name(finished, "POST /v1/jobs")
    assert ingress.kind is SpanKind.SERVER and ingress.attributes is not None
    assert ingress.attributes["jobforge.trace_id"] == handle.trace_id
    assert ingress.attributes["http.response.status_code"] == 202
    assert ingress.context is not None and f"{ingress.context.trace_id:032x}" == CALLER_TRACE
    start = by_name(finished, f"StartWorkflow:{HC}")
    assert start.parent is not None and start.parent.span_id == ingress.context.span_id
    by_name(finished, f"RunWorkflow:{HC}")
    admit = by_name(finished, "RunActivity:jobforge.admit")
    assert admit.attributes is not None and admit.attributes["jobforge.trace_id"] == handle.trace_id
    names = {s.name for s in finished}
    assert {"StartActivity:jobforge.admit", "RunActivity:jobforge.finish_run"} <= names
    assert_one_tree(finished, ingress)


async def test_event_trace_crosses_routing_and_the_trigger_fired_run(
        traced: tuple[Runtime, httpx.AsyncClient], spans: InMemorySpanExporter) -> None:
    """POST /v1/events → routing workflow → trigger fire activity → the template run it starts: one trace,
    rooted at the ingress span that carries the event's JobForge trace id."""
    rt, api = traced
    assert rt.temporal is not None
    tenant, headers = await key_for(rt, ["events:write"])
    await TriggerService(rt.store.triggers, rt.temporal, rt.settings, rt.registry, rt.flags).create(
        TriggerSpec(tenant_id=tenant, name="orders", kind=TriggerKind.EVENT, event_pattern="order.*",
                    template_key=HC, inputs={"task_queues": [rt.settings.task_queue]}))
    response = await api.post("/v1/events", headers=headers,
                              json={"event_id": "o-1", "event_type": "order.paid", "payload": {"n": 1}})
    assert response.status_code == 202, response.text
    receipt = EventReceipt.model_validate_json(response.content)
    routed = await rt.client().wait_routed(receipt)
    assert isinstance(routed, RouteEventResult) and len(routed.fires) == 1
    run_id = routed.fires[0].run_workflow_id
    assert run_id is not None
    await rt.temporal.get_workflow_handle(run_id).result()
    finished = spans.get_finished_spans()
    ingress = by_name(finished, "POST /v1/events")
    assert ingress.attributes is not None and ingress.attributes["jobforge.trace_id"] == receipt.trace_id
    names = {s.name for s in finished}
    assert {"RouteEvent:order.paid", f"StartWorkflow:{HC}", f"RunWorkflow:{HC}",
            "RunActivity:jobforge.admit"} <= names
    assert any(n.startswith("RunWorkflow:") and n != f"RunWorkflow:{HC}" for n in names)  # the router
    assert_one_tree(finished, ingress)


async def test_tracing_off_installs_no_interceptor(settings: Settings) -> None:
    """Unconfigured, a process has no tracing: no client or worker interceptor, no ingress middleware."""
    assert tracing.configure("", "jobforge-test") is None
    assert tracing.current() is None and tracing.interceptors() == []
    async with open_runtime(settings) as rt:
        assert rt.temporal is not None
        assert rt.temporal.config()["interceptors"] == []
        workers = build_workers(rt)
        assert workers and not any(isinstance(i, TracingInterceptor)
                                   for w in workers for i in w.config().get("interceptors", []))
        app = create_app(settings, rt).fastapi
        assert app is not None and not any(m.cls is tracing.IngressSpans for m in app.user_middleware)


class _Collector(BaseHTTPRequestHandler):
    """An OTLP/HTTP endpoint that keeps what it receives."""

    received: list[tuple[str, bytes]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        self.received.append((self.path, body))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


async def test_otlp_endpoint_receives_the_request_trace(settings: Settings, flags_on: None) -> None:
    """With JOBFORGE_OTLP_ENDPOINT set, the spans of a request reach that collector as OTLP/HTTP protobuf,
    under the process's service name."""
    received: list[tuple[str, bytes]] = []
    handler = type("Collector", (_Collector,), {"received": received})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    configured = tracing.configure(f"http://127.0.0.1:{server.server_address[1]}", "jobforge-api")
    assert configured is not None
    try:
        async with open_runtime(settings) as rt:
            async for api in serve(rt):
                _, headers = await key_for(rt, ["jobs:*"])
                response = await api.post("/v1/jobs", headers=headers, json={
                    "template_key": HC, "inputs": {"task_queues": [rt.settings.task_queue]}})
                assert response.status_code == 202, response.text
                await rt.client().result(RunHandleInfo.model_validate_json(response.content))
        assert await asyncio.to_thread(configured.provider.force_flush, 10_000)
    finally:
        tracing.install(None)
        configured.shutdown()
        server.shutdown()
        server.server_close()
    assert received and all(path == "/v1/traces" for path, _ in received)
    names: set[str] = set()
    services: set[str] = set()
    for _, body in received:
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            services |= {a.value.string_value for a in resource_spans.resource.attributes if a.key == "service.name"}
            names |= {span.name for scope in resource_spans.scope_spans for span in scope.spans}
    assert services == {"jobforge-api"}
    assert {"POST /v1/jobs", f"StartWorkflow:{HC}", f"RunWorkflow:{HC}", "RunActivity:jobforge.admit"} <= names
