"""Metrics and tracing configuration: what a process gets from its settings, and how it refuses bad ones."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from temporalio.runtime import Runtime

from jobforge.errors import TelemetryUnavailable
from shared import metrics, tracing
from shared.settings import Settings, SettingsError


@pytest.fixture(autouse=True)
def _restore() -> Iterator[None]:
    """Each test leaves this process's metrics and tracing as it found them."""
    saved_metrics, saved_tracing = metrics.install(None), tracing.install(None)
    try:
        yield
    finally:
        metrics.install(saved_metrics)
        tracing.install(saved_tracing)


def test_unconfigured_metrics_count_into_the_default_runtime() -> None:
    """Without a bind address the helpers use Temporal's default runtime, which serves no endpoint."""
    configured = metrics.configure("", "jobforge-test")
    assert configured.bind == "" and configured.runtime is Runtime.default()
    assert metrics.temporal_runtime() is Runtime.default()
    metrics.event_admitted(duplicate=True)  # counts into that meter; no error, nothing served


def test_a_busy_metrics_port_is_a_typed_error() -> None:
    """A bind address already in use refuses to start with TelemetryUnavailable naming it."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        bind = f"127.0.0.1:{busy.getsockname()[1]}"
        with pytest.raises(TelemetryUnavailable, match=bind):
            metrics.configure(bind, "jobforge-test")
    assert metrics.current().bind == ""


def test_metric_bind_settings_need_host_and_port() -> None:
    """metrics_bind / api_metrics_bind accept empty or host:port, nothing else."""
    assert Settings(metrics_bind="0.0.0.0:9464", api_metrics_bind="").metrics_bind == "0.0.0.0:9464"
    for bad in ("9464", "localhost", "host:port"):
        with pytest.raises(SettingsError, match="metrics_bind: must be text matching"):
            Settings(metrics_bind=bad)


def test_workers_on_one_host_get_consecutive_metric_ports() -> None:
    """The n-th worker `jobforge dev` starts serves its metrics on the configured port + n."""
    assert [metrics.nth_bind("0.0.0.0:9464", i) for i in range(3)] == ["0.0.0.0:9464", "0.0.0.0:9465", "0.0.0.0:9466"]
    assert metrics.nth_bind("[::1]:9000", 1) == "[::1]:9001"


def test_otlp_endpoint_becomes_the_traces_url() -> None:
    """A collector's base URL gets /v1/traces appended once; a non-HTTP value is refused."""
    assert tracing.traces_url("http://collector:4318") == "http://collector:4318/v1/traces"
    assert tracing.traces_url("https://c.example/otlp/v1/traces/") == "https://c.example/otlp/v1/traces"
    with pytest.raises(TelemetryUnavailable):
        tracing.traces_url("collector:4317")


def test_tracing_is_off_without_an_endpoint_and_on_with_one() -> None:
    """No endpoint: no tracing and no interceptor; an endpoint: one TracingInterceptor for every client."""
    assert tracing.configure("", "jobforge-test") is None
    assert tracing.interceptors() == []
    configured = tracing.configure("http://127.0.0.1:9/", "jobforge-test")
    assert configured is not None
    try:
        assert tracing.interceptors() == [configured.interceptor]
    finally:
        configured.shutdown()
