"""JobForge's metrics: one meter per process, the Temporal runtime's, so SDK and JobForge metrics share one endpoint.

A process calls :func:`configure` once, in its ``main()``: with a bind address it builds a Temporal
``Runtime`` whose Prometheus endpoint (``http://<bind>/metrics``) serves the SDK's metrics
(``temporal_*``) and JobForge's (``jobforge_*``); :func:`shared.temporal.connect` hands that runtime
to every client (and so to every worker on it). The helpers below always count into the current
meter; before :func:`configure`, or with an empty bind, that is the meter of Temporal's default
runtime, which has no exporter — nothing is served, and ``/metrics`` does not exist (the process
logs ``metrics_off`` at start). Every name is documented in docs/operations.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from temporalio.common import MetricCounter, MetricGauge, MetricHistogramFloat
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from jobforge.errors import TelemetryUnavailable

#: counters get ``_total`` appended on the endpoint (OpenMetrics convention)
EVENTS = "jobforge_events"
RATE_LIMITED = "jobforge_rate_limited"
DEDUPE_HITS = "jobforge_dedupe_hits"
TRIGGER_DECISIONS = "jobforge_trigger_decisions"
EVENTS_ROUTED = "jobforge_event_routing"
JOB_ADMISSIONS = "jobforge_job_admissions"
VERIFY_STEP_SECONDS = "jobforge_verify_step_duration_seconds"
TASK_QUEUE_BACKLOG = "jobforge_task_queue_backlog"

#: bucket bounds of the step-duration histogram, in seconds (a step runs from a second to many minutes)
STEP_SECONDS_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)


@dataclass(frozen=True, slots=True)
class Metrics:
    """JobForge's instruments on one Temporal runtime's meter."""

    runtime: Runtime
    #: ``host:port`` of the Prometheus endpoint; empty when this runtime exports nothing
    bind: str
    events: MetricCounter
    rate_limited: MetricCounter
    dedupe_hits: MetricCounter
    trigger_decisions: MetricCounter
    event_routing: MetricCounter
    job_admissions: MetricCounter
    verify_step_seconds: MetricHistogramFloat
    task_queue_backlog: MetricGauge

    @classmethod
    def on(cls, runtime: Runtime, bind: str = "") -> Metrics:
        meter = runtime.metric_meter
        return cls(
            runtime=runtime, bind=bind,
            events=meter.create_counter(EVENTS, "Events judged by the gate, by decision and reason (error code)."),
            rate_limited=meter.create_counter(RATE_LIMITED, "Requests refused by a rate limit, by action."),
            dedupe_hits=meter.create_counter(DEDUPE_HITS, "Events recognised as duplicates within the dedupe TTL."),
            trigger_decisions=meter.create_counter(TRIGGER_DECISIONS,
                                                   "Trigger fires decided by the safety gate, by verdict and source."),
            event_routing=meter.create_counter(
                EVENTS_ROUTED, "Event routing attempts by the routers, by outcome (routed, failed: retried later, "
                "swept: found unrouted by a new router run)."),
            job_admissions=meter.create_counter(JOB_ADMISSIONS,
                                                "Job admissions, by stage, decision and reason (error code)."),
            verify_step_seconds=meter.create_histogram_float(VERIFY_STEP_SECONDS,
                                                             "Duration of verify steps, by step and status.", "s"),
            task_queue_backlog=meter.create_gauge(TASK_QUEUE_BACKLOG,
                                                  "Approximate backlog of a task queue (DescribeTaskQueue)."),
        )


def prometheus_runtime(bind: str, process: str) -> Runtime:
    """A Temporal runtime serving its metrics on ``http://<bind>/metrics``, each tagged ``jobforge_process``."""
    config = PrometheusConfig(bind_address=bind, counters_total_suffix=True, durations_as_seconds=True,
                              histogram_bucket_overrides={VERIFY_STEP_SECONDS: list(STEP_SECONDS_BUCKETS)})
    try:
        return Runtime(telemetry=TelemetryConfig(metrics=config, global_tags={"jobforge_process": process},
                                                 attach_service_name=False))
    except ValueError as exc:  # the Rust core refuses a bad or busy address with a ValueError
        raise TelemetryUnavailable(f"cannot serve metrics on {bind}: {str(exc).splitlines()[0][:200]}",
                                   bind=bind) from None


_current: Metrics | None = None


def current() -> Metrics:
    """This process's metrics; Temporal's default runtime (no exporter) until :func:`configure`."""
    global _current
    if _current is None:
        _current = Metrics.on(Runtime.default())
    return _current


def install(metrics: Metrics | None) -> Metrics | None:
    """Make ``metrics`` this process's (None: back to the default runtime); returns the previous ones."""
    global _current
    previous, _current = _current, metrics
    return previous


def configure(bind: str, process: str) -> Metrics:
    """Serve this process's metrics on ``bind`` (``host:port``) from now on; empty = the default runtime."""
    metrics = Metrics.on(prometheus_runtime(bind, process), bind) if bind else Metrics.on(Runtime.default())
    install(metrics)
    return metrics


def nth_bind(bind: str, index: int) -> str:
    """The bind address of the ``index``-th of several processes on one host: consecutive ports from ``bind``'s."""
    host, _, port = bind.rpartition(":")
    return f"{host}:{int(port) + index}"


def temporal_runtime() -> Runtime:
    """The runtime every Temporal client of this process is built on."""
    return current().runtime


# -- what JobForge counts ---------------------------------------------------------------------------


def event_admitted(*, duplicate: bool) -> None:
    """An event passed the gate (a duplicate also counts as a dedupe hit)."""
    metrics = current()
    metrics.events.add(1, {"decision": "admitted", "reason": "duplicate" if duplicate else "admitted"})
    if duplicate:
        metrics.dedupe_hits.add(1)


def event_denied(error_code: str, *, retryable: bool = False) -> None:
    """The gate refused an event (``failed`` when the refusal was infrastructure trouble, not a decision)."""
    current().events.add(1, {"decision": "failed" if retryable else "denied", "reason": error_code})


def rate_limited(action: str) -> None:
    """A request was refused because its tenant's (or actor's) budget was spent."""
    current().rate_limited.add(1, {"action": action})


def trigger_decided(verdict: str, source: str) -> None:
    """The safety gate decided one trigger fire (recorded once per fire key)."""
    current().trigger_decisions.add(1, {"verdict": verdict, "source": source})


def event_routing(outcome: str, count: int = 1) -> None:
    """Events a router routed (``routed``), failed to route this time (``failed``), or swept up (``swept``)."""
    if count:
        current().event_routing.add(count, {"outcome": outcome})


def job_admission(stage: str, *, allowed: bool, reason: str, retryable: bool = False) -> None:
    """A job admission: ``gate`` = the full gate judged a request, ``run`` = a run's admission activity decided.

    The decision is ``failed`` when the refusal was infrastructure trouble (retried), not a decision.
    """
    decision = "allowed" if allowed else "failed" if retryable else "denied"
    current().job_admissions.add(1, {"stage": stage, "decision": decision, "reason": reason})


def verify_step_finished(step: str, status: str, seconds: float) -> None:
    """A verify step (install, lint, typecheck, build, test) ended with this status after ``seconds``."""
    current().verify_step_seconds.record(max(0.0, seconds), {"step": step, "status": status})


def queue_backlog(task_queue: str, kind: str, count: int) -> None:
    """The approximate backlog of a task queue's workflow or activity tasks, as last described."""
    current().task_queue_backlog.set(max(0, count), {"task_queue": task_queue, "kind": kind})
