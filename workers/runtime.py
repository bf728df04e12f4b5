"""What every JobForge process builds from its settings: store, flags, registry, Temporal client."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import NoReturn

import structlog
from temporalio.client import Client

from jobforge.errors import StackNotFound, StackStartFailed
from jobforge.ids import check_tenant_id
from shared import metrics, tracing
from shared.client import OperatorClient
from shared.flags import FlagReader, this_process
from shared.gate import Gate
from shared.settings import Settings
from shared.store import Store
from shared.templates import Registry, load_registry
from shared.temporal import connect
from workers.stack import STACK_GATE, database_url, stack_flag_reader

log = structlog.get_logger("jobforge.runtime")


@dataclass
class Runtime:
    settings: Settings
    store: Store
    flags: FlagReader
    registry: Registry
    temporal: Client | None = None
    _gate: Gate | None = field(default=None, repr=False)

    @property
    def gate(self) -> Gate:
        """The security gate over this runtime's store, flags and registry (built on first use)."""
        if self._gate is None:
            self._gate = Gate(self.store, self.settings, self.flags, self.registry)
        return self._gate

    def client(self) -> OperatorClient:
        """The SDK over Temporal-direct, with the gate: trusted operator access (``operator_scopes``)."""
        assert self.temporal is not None, "runtime opened without Temporal"
        return OperatorClient(self.temporal, self.settings, self.registry, store=self.store, flags=self.flags,
                              gate=self.gate)


def require_database(settings: Settings, process: str) -> None:
    """A service process (worker, API) runs on its settings alone: say so when they name no database."""
    if not settings.database_url_value():
        raise StackNotFound(f"{process} has no database: set JOBFORGE_DATABASE_URL and JOBFORGE_TEMPORAL_ADDRESS "
                            "(`jobforge dev` sets both for the processes it starts)")


def wait_for_stack(process: str) -> None:
    """Under ``jobforge dev`` (``JOBFORGE_STACK_GATE=stdin``): block until the stack says on stdin that the
    database is migrated and Temporal listens. The dev stack launches its workers and API while PostgreSQL
    starts, so their imports overlap its start; a process started any other way does not wait."""
    if os.environ.get(STACK_GATE) != "stdin":
        return
    log.info("stack_gate_waiting", process=process)  # its imports are done (bench/startup.py reads when)
    if not sys.stdin.readline():
        raise StackStartFailed(f"{process}: the dev stack stopped before its database and Temporal were ready")
    log.info("stack_gate_open", process=process)


def leave(code: int | str | None) -> NoReturn:
    """End a service process with ``code`` once traces and output are flushed, skipping interpreter teardown.

    The Temporal SDK can abort the interpreter at teardown (sdk-python #300, PyGILState_Release), which
    would turn a clean stop on SIGTERM into SIGABRT for whatever supervises the process.
    """
    traced = tracing.current()
    if traced is not None:
        traced.shutdown()
    if isinstance(code, str):
        sys.stderr.write(code + "\n")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if isinstance(code, int) else (0 if code is None else 1))


def configure_telemetry(settings: Settings, process: str, metrics_bind: str) -> None:
    """Once per process, in ``main()``: the Prometheus endpoint (empty bind = none) and tracing (OTLP when set)."""
    served = metrics.configure(metrics_bind, process)
    if served.bind:
        log.info("metrics_serving", url=f"http://{served.bind}/metrics")
    else:
        log.info("metrics_off", reason="no bind address (JOBFORGE_METRICS_BIND / JOBFORGE_API_METRICS_BIND)")
    if tracing.configure(settings.otlp_endpoint, process) is not None:
        log.info("tracing_on", otlp=tracing.traces_url(settings.otlp_endpoint))
    else:
        log.info("tracing_off", reason="JOBFORGE_OTLP_ENDPOINT is not set")


@asynccontextmanager
async def open_runtime(settings: Settings, *, temporal: bool = True, process: str = "",
                       stack_flags: bool = False, tenant: str | None = None) -> AsyncIterator[Runtime]:
    """The runtime of one process. ``process`` names it in flag refusals (default: the program's name);
    ``stack_flags``: a command run beside ``jobforge dev`` reads flags as the stack's workers do;
    ``tenant``: the command is about this tenant, refused with :class:`UnknownTenant` unless it exists."""
    async with Store.opened(database_url(settings), settings.database_pool_size) as store:
        flags = (stack_flag_reader(settings, store.flag_overrides, settings.flag_override_ttl_seconds)
                 if stack_flags else None) or FlagReader(
            store.flag_overrides, settings.flag_override_ttl_seconds, where=this_process(process))
        runtime = Runtime(settings, store, flags, load_registry(settings))
        if tenant is not None:
            await store.tenants.require(check_tenant_id(tenant))
        if temporal:
            runtime.temporal = await connect(settings)
        try:
            yield runtime
        finally:
            if runtime._gate is not None:  # rate-limit refusals still held for the audit chain
                try:
                    await runtime._gate.flush_denials()
                except Exception as exc:
                    log.warning("audit_flush_failed", error_type=type(exc).__name__)
