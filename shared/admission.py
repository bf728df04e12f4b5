"""The admission decision every run meets first (pure: no I/O, no clock).

The security issue extends this with payload limits, scopes, policy tokens and rate limits; the
activity in ``activities/admission.py`` loads what the decision needs and persists the outcome.
"""

from __future__ import annotations

from collections.abc import Mapping

from shared.canonical import input_hash
from shared.errors import FeatureDisabled, InvalidRequest, JobForgeError
from shared.flags import Flag
from shared.ids import check_idempotency_key, check_tenant_id, check_trace_id
from shared.models import AdmissionResult, JobRun
from shared.templates import Registry


def decide(run: JobRun, workflow_type: str, registry: Registry, flags: Mapping[Flag, bool]) -> AdmissionResult:
    """Admit ``run`` or say exactly why not. ``flags`` holds the resolved value of every flag."""
    try:
        check_tenant_id(run.tenant_id)
        if run.idempotency_key is not None:
            check_idempotency_key(run.idempotency_key)
        if run.trace_id:
            check_trace_id(run.trace_id)
        if workflow_type != run.template_key:
            raise InvalidRequest(
                f"workflow type {workflow_type!r} was started with a request for template {run.template_key!r}")
        spec = registry.get(run.template_key)
        for flag in spec.flags:
            if not flags.get(flag, False):
                raise FeatureDisabled(flag.value)
        model = spec.validate_inputs(run.inputs)
        digest = input_hash(run.inputs)
        if run.input_hash and run.input_hash != digest:
            raise InvalidRequest("the request's input_hash does not match its inputs", field="input_hash")
    except JobForgeError as err:
        return AdmissionResult(admitted=False, reason=err.message, error_code=err.code, error_details=err.details)
    return AdmissionResult(admitted=True, inputs=model.model_dump(mode="json"), input_hash=digest)
