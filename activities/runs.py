"""Admission and run bookkeeping: the first and last activity of every template run."""

from __future__ import annotations

import structlog
from temporalio import activity

from shared.admission import decide
from shared.flags import Flag, FlagReader
from shared.models import AdmissionInput, AdmissionResult, FinishRunInput, RunStatus
from shared.store import Store
from shared.templates import Registry

log = structlog.get_logger("jobforge.activities.runs")


class RunActivities:
    def __init__(self, store: Store, flags: FlagReader, registry: Registry) -> None:
        self.store = store
        self.flags = flags
        self.registry = registry

    @activity.defn(name="jobforge.admit")
    async def admit(self, req: AdmissionInput) -> AdmissionResult:
        """Decide whether the run may proceed, and record the run with that outcome."""
        run = req.run
        flags = {value.flag: value.enabled for value in await self.flags.values(tuple(Flag))}
        result = decide(run, req.workflow_type, self.registry, flags)
        status = RunStatus.RUNNING if result.admitted else RunStatus.REJECTED
        await self.store.record_run(
            tenant_id=run.tenant_id[:63], template_key=run.template_key[:200], workflow_id=req.workflow_id,
            run_id=req.run_id, status=status, trace_id=run.trace_id[:128], actor=run.actor[:200],
            idempotency_key=(run.idempotency_key or None) if result.admitted else None,
            input_hash=result.input_hash, error=result.reason,
        )
        log.info("run_admitted" if result.admitted else "run_rejected", tenant_id=run.tenant_id,
                 template=run.template_key, run_id=req.run_id, trace_id=run.trace_id,
                 error_code=result.error_code or None)
        return result

    @activity.defn(name="jobforge.finish_run")
    async def finish_run(self, req: FinishRunInput) -> None:
        """Write the run's final status and result summary."""
        await self.store.finish_run(req.run_id, req.status, req.summary, req.error)
        log.info("run_finished", tenant_id=req.tenant_id, run_id=req.run_id, status=req.status.value)
