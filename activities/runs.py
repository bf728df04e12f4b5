"""Admission and run bookkeeping: the first and last activity of every template run."""

from __future__ import annotations

from datetime import UTC, datetime

import structlog
from temporalio import activity

from jobforge.errors import JobForgeError, UnknownWorkflowType
from jobforge.ids import new_trace_id
from jobforge.models import JobRun, RunStatus
from shared import metrics, tracing
from shared.admission import Judged
from shared.bookkeeping import AdmissionInput, AdmissionResult, FinishRunInput, RefusalInput, RefusalResult
from shared.flags import Flag, FlagReader
from shared.gate import JOBS_REQUEST, Gate, ReceiptUse
from shared.run_argument import readable_trace, run_attributes
from shared.security.audit import Decision as AuditDecision
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

    async def _judge(self, req: AdmissionInput, run: JobRun) -> tuple[AdmissionResult, bool]:
        """Admission's verdict, and whether the run is recorded already (admitted on its receipt: the
        receipt's use and the run's record are one statement)."""
        judged = None
        recorded = False
        attributes = req.search_attributes
        if run.receipt:
            async def record(judged: Judged, use: ReceiptUse) -> bool:
                nonlocal recorded
                recorded = await self.store.record_admitted_with_receipt(
                    tenant_id=run.tenant_id, template_key=run.template_key, workflow_id=use.workflow_id,
                    run_id=use.run_id, trace_id=run.trace_id, actor=run.actor,
                    idempotency_key=run.idempotency_key or None, input_hash=judged.input_hash,
                    receipt_jti=use.jti, receipt_expires_at=datetime.fromtimestamp(use.expires_at, UTC)) is not None
                return recorded

            judged = await self.gate.accept_receipt(run, workflow_type=req.workflow_type, workflow_id=req.workflow_id,
                                                    run_id=req.run_id, attributes=attributes, record_admitted=record)
        if judged is None:
            # no (valid) receipt: a raw Temporal start, the UI or a Schedule, judged as an operator request
            operator = Principal.operator(run.actor, tuple(self.gate.settings.operator_scopes))
            admission = await self.gate.admit_job(run, operator, workflow_id=req.workflow_id, run_id=req.run_id,
                                                  workflow_type=req.workflow_type, attributes=attributes)
            judged = admission.judged
        return AdmissionResult(admitted=True, inputs=judged.inputs, input_hash=judged.input_hash,
                               capture_provenance=await self.flags.is_enabled(Flag.REPLAY_PACK)), recorded

    @activity.defn(name="jobforge.admit")
    async def admit(self, req: AdmissionInput) -> AdmissionResult:
        """Decide whether the run may proceed, and record the run with that outcome.

        A run without a trace id takes its JobForgeTrace attribute's (when valid) or a new one; the
        result names the search attributes the workflow sets (the argument is their authority).
        """
        run = req.run
        if not run.trace_id:
            run = run.model_copy(update={"trace_id": readable_trace({}, req.search_attributes) or new_trace_id()})
        tracing.tag_trace(run.trace_id)
        recorded = False
        try:
            result, recorded = await self._judge(req, run)
        except JobForgeError as err:
            if err.retryable:
                raise  # the store or Temporal is away: let the retry policy work
            result = AdmissionResult(admitted=False, reason=redact_text(err.message), error_code=err.code,
                                     error_details=redact(err.details))
        input_hash = result.input_hash
        # the result is recorded in the run's history: it carries what the workflow reads (verdict, inputs,
        # provenance switch, search attributes), not the input hash or trace id the run record keeps
        result = result.model_copy(update={
            "input_hash": "",
            "search_attributes": run_attributes(run.tenant_id, run.template_key if run.template_key ==
                                                req.workflow_type else req.workflow_type, run.trace_id)})
        metrics.job_admission("run", allowed=result.admitted, reason=result.error_code or "admitted")
        status = RunStatus.RUNNING if result.admitted else RunStatus.REJECTED
        if not recorded:
            await self.store.record_run(
                tenant_id=run.tenant_id, template_key=run.template_key, workflow_id=req.workflow_id,
                run_id=req.run_id, status=status, trace_id=run.trace_id,
                actor=run.actor,  # the store clips them to their columns
                idempotency_key=(run.idempotency_key or None) if result.admitted else None,
                input_hash=input_hash, error=result.reason,
            )
        log.info("run_admitted" if result.admitted else "run_rejected", tenant_id=run.tenant_id,
                 template=run.template_key, run_id=req.run_id, trace_id=run.trace_id,
                 error_code=result.error_code or None, receipt=bool(run.receipt))
        return result

    @activity.defn(name="jobforge.refuse_run")
    async def refuse(self, req: RefusalInput) -> RefusalResult:
        """Record and audit a run refused before admission could read it (a malformed argument, an
        unknown workflow type), under its tenant when that can be read; answer the typed error."""
        code, reason, details = req.error_code, req.reason, dict(req.error_details)
        if not code:
            err = self._unknown_type(req.workflow_type, req.task_queue)
            code, reason, details = err.code, err.message, err.details
        reason, details = redact_text(reason), redact(details)
        metrics.job_admission("run", allowed=False, reason=code)
        template = pg_text(req.workflow_type)[:200]
        if req.tenant_id:
            await self.store.record_run(
                tenant_id=req.tenant_id, template_key=template, workflow_id=req.workflow_id, run_id=req.run_id,
                status=RunStatus.REJECTED, trace_id=req.trace_id, actor=req.actor, idempotency_key=None,
                input_hash="", error=reason)
            await self.gate.record(await self.gate.flag_values(), req.tenant_id, req.actor, JOBS_REQUEST, template,
                                   AuditDecision.DENY, reason, req.trace_id,
                                   {"error_code": code, "workflow_id": req.workflow_id})
        log.info("run_rejected", tenant_id=req.tenant_id or None, template=template, run_id=req.run_id,
                 trace_id=req.trace_id or None, error_code=code, task_queue=req.task_queue)
        return RefusalResult(error_code=code, reason=reason, error_details=details,
                             search_attributes=run_attributes(req.tenant_id, template, req.trace_id))

    def _unknown_type(self, workflow_type: str, task_queue: str) -> UnknownWorkflowType:
        known = [spec.key for spec in self.registry]
        return UnknownWorkflowType(
            f"no JobForge template or workflow is named {pg_text(workflow_type)[:200]!r} on task queue "
            f"{task_queue!r}; the templates are: {', '.join(known)} (`jobforge templates` lists them)",
            workflow_type=pg_text(workflow_type)[:200], task_queue=task_queue, known_templates=known)

    @activity.defn(name="jobforge.finish_run")
    async def finish_run(self, req: FinishRunInput) -> None:
        """Write the run's final status and result summary."""
        await self.store.finish_run(req.run_id, req.status, req.summary, req.error)
        log.info("run_finished", tenant_id=req.tenant_id, run_id=req.run_id, status=req.status.value)
