"""Admission and run bookkeeping: the first and last activity of every template run."""

from __future__ import annotations

import structlog
from temporalio import activity

from shared import metrics, tracing
from shared.errors import JobForgeError
from shared.flags import Flag, FlagReader
from shared.gate import Gate
from shared.models import AdmissionInput, AdmissionResult, FinishRunInput, RunStatus
from shared.security.limits import pg_text
from shared.security.principal import Principal
from shared.security.redaction import redact, redact_text
from shared.store import Store
from shared.templates import Registry

log = structlog.get_logger("jobforge.activities.runs")


class RunActivities:
    def __init__(self, store: Store, flags: FlagReader, registry: Registry, gate: Gate) -> None:
        self.store = store
        self.flags = flags
        self.registry = registry
        self.gate = gate

    async def _judge(self, req: AdmissionInput) -> AdmissionResult:
        run = req.run
        judged = None
        if run.receipt:
            judged = await self.gate.accept_receipt(run, workflow_type=req.workflow_type,
                                                    workflow_id=req.workflow_id, run_id=req.run_id)
        if judged is None:
            # no (valid) receipt: a raw Temporal start, the UI or a Schedule, judged as an operator request
            operator = Principal.operator(run.actor, tuple(self.gate.settings.operator_scopes))
            admission = await self.gate.admit_job(run, operator, workflow_id=req.workflow_id, run_id=req.run_id,
                                                  workflow_type=req.workflow_type)
            judged = admission.judged
        return AdmissionResult(admitted=True, inputs=judged.inputs, input_hash=judged.input_hash,
                               capture_provenance=await self.flags.is_enabled(Flag.REPLAY_PACK))

    @activity.defn(name="jobforge.admit")
    async def admit(self, req: AdmissionInput) -> AdmissionResult:
        """Decide whether the run may proceed, and record the run with that outcome."""
        run = req.run
        tracing.tag_trace(run.trace_id)
        try:
            result = await self._judge(req)
        except JobForgeError as err:
            if err.retryable:
                raise  # the store or Temporal is away: let the retry policy work
            result = AdmissionResult(admitted=False, reason=redact_text(err.message), error_code=err.code,
                                     error_details=redact(err.details))
        metrics.job_admission("run", allowed=result.admitted, reason=result.error_code or "admitted")
        status = RunStatus.RUNNING if result.admitted else RunStatus.REJECTED
        await self.store.record_run(
            tenant_id=pg_text(run.tenant_id)[:63], template_key=pg_text(run.template_key)[:200],
            workflow_id=req.workflow_id, run_id=req.run_id, status=status, trace_id=pg_text(run.trace_id)[:128],
            actor=pg_text(run.actor)[:200], idempotency_key=(run.idempotency_key or None) if result.admitted else None,
            input_hash=result.input_hash, error=pg_text(result.reason),
        )
        log.info("run_admitted" if result.admitted else "run_rejected", tenant_id=run.tenant_id,
                 template=run.template_key, run_id=req.run_id, trace_id=run.trace_id,
                 error_code=result.error_code or None, receipt=bool(run.receipt))
        return result

    @activity.defn(name="jobforge.finish_run")
    async def finish_run(self, req: FinishRunInput) -> None:
        """Write the run's final status and result summary."""
        await self.store.finish_run(req.run_id, req.status, req.summary, req.error)
        log.info("run_finished", tenant_id=req.tenant_id, run_id=req.run_id, status=req.status.value)
