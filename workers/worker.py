"""``jobforge-worker``: runs every template's workflows and activities on its task queues."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import structlog
import typer
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxRestrictions

from activities.healthcheck import HealthcheckActivities
from activities.keys import KeyActivities
from activities.provenance import ProvenanceActivities
from activities.runs import RunActivities
from activities.triggers import TriggerActivities
from activities.verify import VerifyActivities
from jobforge.errors import JobForgeError
from shared import metrics
from shared.logs import configure
from shared.replay.service import ReplayService
from shared.settings import Settings
from shared.stale_runs import sweep_loop
from shared.templates import import_template_module
from workers import payload_visits
from workers.activity_errors import ActivityErrors
from workers.archiver import archive_histories
from workers.queue_depth import watch_queue_depth
from workers.runtime import (
    Runtime,
    configure_telemetry,
    leave,
    open_runtime,
    require_database,
    wait_for_stack,
)
from workers.sandbox import CompiledSandboxRunner
from workflows import discover
from workflows._job import JobArguments

log = structlog.get_logger("jobforge.worker")

#: The sandbox re-imports a workflow's non-passthrough modules for every new workflow instance. JobForge's
#: domain core, activities (only their definitions are referenced) and the shared workflow frame hold no
#: mutable module state, so they pass through: a run's instance is built in a fraction of the time. The runner
#: compiles the sandbox's code strings once (``workers.sandbox``).
WORKFLOW_RUNNER = CompiledSandboxRunner(restrictions=SandboxRestrictions.default.with_passthrough_modules(
    "shared", "activities", "workflows._job", "pydantic", "pydantic_core", "sqlalchemy", "structlog", "orjson",
    "cryptography"))


def collect(rt: Runtime) -> tuple[list[type[Any]], list[Callable[..., Any]]]:
    """Workflows and activities this worker registers; fails fast when a template has no workflow."""
    assert rt.temporal is not None
    extra = [import_template_module(name) for name in rt.settings.template_modules]
    workflows = discover(extra)
    names = {wf.__temporal_workflow_definition.name for wf in workflows}
    missing = [spec.key for spec in rt.registry if spec.key not in names]
    if missing:
        raise JobForgeError(f"templates without a workflow named after them: {', '.join(missing)}")
    runs = RunActivities(rt.store, rt.flags, rt.registry, rt.gate)
    provenance = ProvenanceActivities(rt.store.replay, rt.flags)
    health = HealthcheckActivities(rt.store, rt.temporal, rt.settings, rt.registry)
    activities: list[Callable[..., Any]] = [runs.admit, runs.refuse, runs.finish_run, health.check_database,
                                            health.check_temporal, health.check_pollers,
                                            provenance.capture_provenance]
    verify = VerifyActivities(rt.store, rt.settings, rt.flags)
    verify.warm()  # the host's probes, in the background: not on the first run's critical path
    activities += [verify.prepare, verify.install, verify.snapshot, verify.run_step, verify.finalize]
    triggers = TriggerActivities(rt.store, rt.gate, rt.temporal, rt.settings, rt.registry)
    activities += [triggers.fire, triggers.route_event,
                   triggers.route_batch, triggers.unrouted, triggers.fire_refused]
    keys = KeyActivities(rt.gate.tenants)
    activities += [keys.create_successor, keys.revoke]
    for module in extra:
        build = getattr(module, "build_activities", None)
        if build is not None:
            activities.extend(build(rt))
    return workflows, activities


def build_workers(rt: Runtime, queues: list[str] | None = None) -> list[Worker]:
    assert rt.temporal is not None
    settings = rt.settings
    workflows, activities = collect(rt)
    queues = queues or settings.worker_task_queues or rt.registry.task_queues(settings)
    identity = f"jobforge-worker@{socket.gethostname()}:{os.getpid()}"
    payload_visits.install()  # one walk per activation and per completion instead of three (workers.payload_visits)
    return [
        Worker(rt.temporal, task_queue=queue, workflows=workflows, activities=activities,
               identity=identity,
               max_concurrent_activities=settings.worker_max_concurrent_activities,
               max_concurrent_workflow_tasks=settings.worker_max_concurrent_workflow_tasks,
               graceful_shutdown_timeout=timedelta(seconds=settings.worker_graceful_shutdown_seconds),
               workflow_runner=WORKFLOW_RUNNER,
               interceptors=[ActivityErrors(), JobArguments(frozenset(spec.key for spec in rt.registry))])
        for queue in queues
    ]


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    async with open_runtime(settings, process="jobforge-worker") as rt:
        workers = build_workers(rt)
        queues = [w.task_queue for w in workers]
        runner: asyncio.Future[list[None]] = asyncio.gather(*(worker.run() for worker in workers))
        log.info("worker_started", task_queues=queues, pid=os.getpid(),
                 temporal=settings.temporal_address, namespace=settings.temporal_namespace)
        archiver = asyncio.ensure_future(archive_histories(
            ReplayService(rt.store, rt.temporal, rt.flags), stop, settings.history_capture_interval_seconds))
        assert rt.temporal is not None
        # runs left queued by a workflow that closed before admission get the status it closed with
        sweeper = asyncio.ensure_future(sweep_loop(rt.store, rt.temporal, stop, settings.queued_sweep_interval_seconds,
                                                   settings.queued_sweep_after_seconds))
        watcher: asyncio.Future[None] | None = None
        if metrics.current().bind and rt.temporal is not None:  # the backlog gauge exists only where it is served
            watcher = asyncio.ensure_future(watch_queue_depth(rt.temporal, queues, stop,
                                                              settings.queue_depth_interval_seconds))
        stopper: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait([runner, stopper], return_when=asyncio.FIRST_COMPLETED)
        grace = settings.worker_graceful_shutdown_seconds
        if stopper in done:
            log.info("worker_stopping", grace_seconds=grace)
            # Temporal (or the store) may be away: the pollers and the archiver's calls then wait out
            # their own timeouts, so the shutdown gets the grace period and a short margin, no more
            shutdown = asyncio.gather(*(worker.shutdown() for worker in workers), runner)
            if not await _within(shutdown, grace + SHUTDOWN_MARGIN_SECONDS):
                log.warning("worker_shutdown_cut", grace_seconds=grace,
                            reason="in-flight work did not finish in time (is Temporal reachable?)")
                leave(0)
        else:
            stopper.cancel()
            runner.result()
        stop.set()
        side = [task for task in (archiver, sweeper, watcher) if task is not None]
        if not await _within(asyncio.gather(*side), SHUTDOWN_MARGIN_SECONDS):
            log.warning("worker_shutdown_cut", reason="the history archiver did not stop in time")
            leave(0)
        log.info("worker_stopped")


#: what a stopping worker waits beyond its grace period for the SDK to wind down
SHUTDOWN_MARGIN_SECONDS = 5.0


async def _within(work: asyncio.Future[Any], seconds: float) -> bool:
    """Whether ``work`` finished within ``seconds`` (its error, if any, propagates)."""
    try:
        await asyncio.wait_for(asyncio.shield(work), timeout=seconds)
    except TimeoutError:
        return False
    return True


async def _main(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve(settings, stop)


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, help="Run JobForge's Temporal worker.")


@app.command()
def run(
    task_queue: list[str] = typer.Option([], "--task-queue", "-q", help="Task queue to serve (repeatable)."),
    max_concurrent_activities: int | None = typer.Option(None, min=1),
    max_concurrent_workflow_tasks: int | None = typer.Option(None, min=1),
    graceful_shutdown_seconds: float | None = typer.Option(None, min=0),
    metrics_bind: str | None = typer.Option(None, help="host:port of the Prometheus endpoint "
                                            "(default: JOBFORGE_METRICS_BIND; empty = none)."),
) -> None:
    """Serve JobForge's task queues until SIGTERM or SIGINT, then let in-flight activities finish."""
    overrides: dict[str, Any] = {}
    if task_queue:
        overrides["worker_task_queues"] = task_queue
    if max_concurrent_activities:
        overrides["worker_max_concurrent_activities"] = max_concurrent_activities
    if max_concurrent_workflow_tasks:
        overrides["worker_max_concurrent_workflow_tasks"] = max_concurrent_workflow_tasks
    if graceful_shutdown_seconds is not None:
        overrides["worker_graceful_shutdown_seconds"] = graceful_shutdown_seconds
    if metrics_bind is not None:
        overrides["metrics_bind"] = metrics_bind
    settings = Settings(**overrides)
    configure(settings.log_level, settings.log_format)
    try:
        require_database(settings, "jobforge-worker")
        configure_telemetry(settings, "jobforge-worker", settings.metrics_bind)
        wait_for_stack("jobforge-worker")
        asyncio.run(_main(settings))
    except JobForgeError as err:
        log.error("worker_failed", error_code=err.code, error=err.message)
        raise typer.Exit(2) from None


def main() -> None:
    try:
        app()
    except SystemExit as exc:
        leave(exc.code)


if __name__ == "__main__":
    main()
