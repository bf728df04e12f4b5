"""OpenTelemetry tracing: one trace from HTTP ingress through the Temporal workflows and activities it starts.

Off unless configured. A process calls :func:`configure` once, in its ``main()``: with
``JOBFORGE_OTLP_ENDPOINT`` set it builds a tracer provider that exports by OTLP/HTTP, and
:func:`shared.temporal.connect` then puts ``temporalio.contrib.opentelemetry.TracingInterceptor`` on
every client (workers built on a client inherit it), so a StartWorkflow span carries its context in
the workflow's headers and the RunWorkflow / StartActivity / RunActivity spans become its children.
jobforge-api wraps its app in :class:`IngressSpans`, whose server span continues a caller's
``traceparent``; JobForge's own trace id is put on it as the attribute ``jobforge.trace_id``.
Unconfigured, no provider, interceptor or exporter exists, :func:`interceptors` is empty, and neither
OpenTelemetry nor Temporal's interceptor for it is imported.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jobforge.errors import TelemetryUnavailable

if TYPE_CHECKING:  # OpenTelemetry is imported when tracing is turned on (build), not by a process without it
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from temporalio.client import Interceptor
    from temporalio.contrib.opentelemetry import TracingInterceptor

#: the span attribute holding JobForge's ``trace_id`` (the one in events, runs, audit entries, logs)
TRACE_ATTRIBUTE = "jobforge.trace_id"
OTLP_TRACES_PATH = "/v1/traces"

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Tracing:
    """A process's tracer provider and the Temporal interceptor that uses it."""

    provider: TracerProvider
    tracer: trace.Tracer
    interceptor: TracingInterceptor

    def shutdown(self) -> None:
        """Export what is buffered and stop exporting."""
        self.provider.shutdown()


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL of a collector's base URL (``http://collector:4318`` → ``.../v1/traces``)."""
    base = endpoint.strip().rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise TelemetryUnavailable(f"JOBFORGE_OTLP_ENDPOINT must be an http(s) URL, not {endpoint!r}",
                                   endpoint=endpoint)
    return base if base.endswith(OTLP_TRACES_PATH) else base + OTLP_TRACES_PATH


def otlp_exporter(endpoint: str) -> SpanExporter:
    """The OTLP/HTTP (protobuf) span exporter for a collector's base URL."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=traces_url(endpoint))


def build(service: str, exporter: SpanExporter, *, batch: bool = True) -> Tracing:
    """A tracer provider for ``service`` exporting through ``exporter`` (batched, or span by span)."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    from temporalio.contrib.opentelemetry import TracingInterceptor

    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("jobforge")
    return Tracing(provider, tracer, TracingInterceptor(tracer))


_current: Tracing | None = None


def current() -> Tracing | None:
    """This process's tracing, None when it is off."""
    return _current


def install(tracing: Tracing | None) -> Tracing | None:
    """Make ``tracing`` this process's (None: off); returns the previous one."""
    global _current
    previous, _current = _current, tracing
    return previous


def configure(endpoint: str, service: str, *, exporter: SpanExporter | None = None) -> Tracing | None:
    """Turn tracing on for this process when ``endpoint`` (OTLP) or ``exporter`` is given; else leave it off.

    ``exporter`` replaces OTLP and exports each span as it ends (an in-memory exporter in tests).
    """
    if exporter is not None:
        tracing: Tracing | None = build(service, exporter, batch=False)
    elif endpoint:
        tracing = build(service, otlp_exporter(endpoint))
    else:
        tracing = None
    install(tracing)
    return tracing


def interceptors() -> list[Interceptor]:
    """The client interceptors tracing needs: ``TracingInterceptor`` when on, none when off."""
    return [_current.interceptor] if _current is not None else []


def tag_trace(trace_id: str) -> None:
    """Put JobForge's trace id on the current span (the ingress span, an activity's span) when one records."""
    if _current is None:  # off: no JobForge span exists to record it
        return
    from opentelemetry import trace

    span = trace.get_current_span()
    if trace_id and span.is_recording():
        span.set_attribute(TRACE_ATTRIBUTE, trace_id)


def carrier() -> dict[str, str]:
    """The current trace context as W3C headers, to carry it across a batching hop (empty when off)."""
    headers: dict[str, str] = {}
    if _current is not None:
        from opentelemetry import propagate

        propagate.inject(headers)
    return headers


@contextmanager
def continued(name: str, headers: Mapping[str, str], trace_id: str = "") -> Iterator[None]:
    """A span named ``name`` continuing the trace in ``headers`` (see :func:`carrier`); nothing when off."""
    if _current is None or not headers:
        yield
        return
    from opentelemetry import propagate

    with _current.tracer.start_as_current_span(name, context=propagate.extract(dict(headers))) as span:
        if trace_id:
            span.set_attribute(TRACE_ATTRIBUTE, trace_id)
        yield


class IngressSpans:
    """Pure ASGI middleware: one SERVER span per HTTP request, continuing the caller's ``traceparent``."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], tracer: trace.Tracer) -> None:
        self.app = app
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from opentelemetry import propagate, trace

        carrier = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope.get("headers", [])}
        method = str(scope.get("method", "GET"))
        status = 0

        async def noting_send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        with self.tracer.start_as_current_span(
                method, context=propagate.extract(carrier), kind=trace.SpanKind.SERVER,
                attributes={"http.request.method": method, "url.path": str(scope.get("path", ""))}) as span:
            try:
                await self.app(scope, receive, noting_send)
            finally:
                route = getattr(scope.get("route"), "path", None)
                if isinstance(route, str):
                    span.update_name(f"{method} {route}")
                    span.set_attribute("http.route", route)
                if status:
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        span.set_status(trace.Status(trace.StatusCode.ERROR))
