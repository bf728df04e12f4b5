"""Runs left ``queued``: their workflow closed (or vanished) before admission recorded anything.

A run is recorded as ``queued`` when its id is handed out; admission moves it on. A workflow terminated,
cancelled or timed out before its first task ran never reaches admission, so its record would stay
``queued`` for ever. :func:`settle` asks Temporal about one such record and, once the workflow is closed
or gone, gives it the terminal status its workflow ended with; :func:`sweep` does that for every record
queued longer than a threshold (each worker runs it periodically: :func:`sweep_loop`), and the read paths
(`jobforge runs show`, ``GET /v1/runs/{id}``, the SDK's ``get_run``) settle the one record they read.

:func:`verdict` is the pure decision; the rest is I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

import structlog

from jobforge.models import RunRecord, RunStatus

if TYPE_CHECKING:
    from temporalio.client import Client

    from shared.store import Store

log = structlog.get_logger("jobforge.stale_runs")

#: a Temporal execution status name → the terminal status of a run that never reached admission
_CLOSED: dict[str, tuple[RunStatus, str]] = {
    "TERMINATED": (RunStatus.CANCELLED, "its workflow was terminated in Temporal before admission"),
    "CANCELED": (RunStatus.CANCELLED, "its workflow was cancelled in Temporal before admission"),
    "TIMED_OUT": (RunStatus.TIMED_OUT, "its workflow timed out in Temporal before admission"),
    "FAILED": (RunStatus.FAILED, "its workflow failed in Temporal before admission recorded it"),
    "COMPLETED": (RunStatus.FAILED, "its workflow closed without admission recording it"),
    "CONTINUED_AS_NEW": (RunStatus.FAILED, "its workflow continued as new before admission recorded it"),
}
_GONE = (RunStatus.FAILED, "its workflow is not in Temporal (never started there, or deleted by retention)")


def verdict(execution_status: str | None, *, found: bool = True) -> tuple[RunStatus, str] | None:
    """The terminal status and reason for a ``queued`` record whose workflow is in ``execution_status``
    (a ``WorkflowExecutionStatus`` name); ``found`` False: Temporal does not know the run. None: leave it
    queued (the workflow is still open: admission will record it)."""
    if not found:
        return _GONE
    return _CLOSED.get(execution_status or "")


async def settle(store: Store, temporal: Client, record: RunRecord) -> RunRecord:
    """``record`` as it stands once a ``queued`` one is checked against Temporal (one describe call)."""
    if record.status is not RunStatus.QUEUED:
        return record
    from temporalio.service import RPCError, RPCStatusCode

    try:
        desc = await temporal.get_workflow_handle(record.workflow_id, run_id=record.run_id).describe()
    except RPCError as exc:
        if exc.status is not RPCStatusCode.NOT_FOUND:
            raise
        decided = verdict(None, found=False)
    else:
        decided = verdict(desc.status.name if desc.status is not None else None)
    if decided is None:
        return record
    status, reason = decided
    closed = await store.close_queued(record.run_id, status, reason)
    if closed is not None:
        log.info("stale_queued_run_closed", tenant_id=record.tenant_id, run_id=record.run_id, status=status.value)
        return closed
    return await store.get_run(record.run_id, record.tenant_id)  # admission moved it on meanwhile


async def sweep(store: Store, temporal: Client, older_than_seconds: float, limit: int = 100) -> Sequence[RunRecord]:
    """Settle every run ``queued`` for longer than ``older_than_seconds`` (up to ``limit``, oldest first);
    the records it closed."""
    closed = []
    for record in await store.queued_before(older_than_seconds, limit):
        settled = await settle(store, temporal, record)
        if settled.status is not RunStatus.QUEUED:
            closed.append(settled)
    return closed


async def sweep_loop(store: Store, temporal: Client, stop: asyncio.Event, interval: float,
                     older_than_seconds: float) -> None:
    """A worker's periodic :func:`sweep` until ``stop`` is set; an outage is logged and tried again later."""
    import psycopg
    from temporalio.service import RPCError

    from jobforge.errors import JobForgeError

    while not stop.is_set():
        try:
            await sweep(store, temporal, older_than_seconds)
        except (JobForgeError, RPCError, psycopg.Error, OSError) as exc:
            log.warning("stale_queued_sweep_failed", error_type=type(exc).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
