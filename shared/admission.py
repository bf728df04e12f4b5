"""The admission decision every run meets first (pure: no I/O, no clock).

:func:`judge` is the pure part of the security gate for a job request: identifiers, template,
feature flags, scopes, payload limits, text the store cannot hold, secrets in inputs and the template's
input model. The
stateful parts (rate limit, policy token, audit) are applied around it by :class:`shared.gate.Gate`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jobforge.errors import InvalidRequest, SecretInInputs
from jobforge.ids import check_idempotency_key, check_tenant_id, check_trace_id
from jobforge.models import JobRun
from shared.canonical import input_hash
from shared.flags import Flag, disabled
from shared.run_argument import check_search_attributes
from shared.security.limits import PayloadLimits, check_payload, check_storable
from shared.security.principal import Principal
from shared.security.redaction import find_secret
from shared.security.scopes import require_scopes
from shared.templates import Registry, TemplateSpec


@dataclass(frozen=True, slots=True)
class Judged:
    spec: TemplateSpec
    inputs: dict[str, Any]
    input_hash: str


def judge(run: JobRun, workflow_type: str, registry: Registry, flags: Mapping[Flag, bool], *,
          principal: Principal | None = None, limits: PayloadLimits | None = None,
          attributes: Mapping[str, str] | None = None) -> Judged:
    """Judge ``run`` for ``principal`` (None: an operator); raise the typed error that refuses it.

    ``flags`` holds the resolved value of every flag; ``limits`` apply when
    JOBFORGE_SECURITY_VALIDATION_ENABLED is on; ``attributes`` are the JobForge search attributes the
    run was started with, which must not contradict it.
    """
    principal = principal or Principal.operator(run.actor)
    check_tenant_id(run.tenant_id)
    if not principal.may_act_for(run.tenant_id):
        raise InvalidRequest("these credentials belong to another tenant", field="tenant_id")
    if run.idempotency_key is not None:
        check_idempotency_key(run.idempotency_key)
    if run.trace_id:
        check_trace_id(run.trace_id)
    if workflow_type != run.template_key:
        raise InvalidRequest(
            f"workflow type {workflow_type!r} was started with a request for template {run.template_key!r}")
    check_search_attributes(run, attributes or {})
    spec = registry.get(run.template_key)
    for flag in spec.flags:
        if not flags.get(flag, False):
            raise disabled(flags, flag)
    if spec.action and not flags.get(Flag.ACTION_JOBS, False):
        raise disabled(flags, Flag.ACTION_JOBS)
    require_scopes(principal.scopes, spec.required_scopes)
    if flags.get(Flag.SECURITY_VALIDATION, False):
        check_payload(run.inputs, limits or PayloadLimits())
    check_storable(run.inputs, "the inputs")
    secret = find_secret(run.inputs)
    if secret is not None:
        raise SecretInInputs(*secret)
    model = spec.validate_inputs(run.inputs)
    digest = input_hash(run.inputs)
    if run.input_hash and run.input_hash != digest:
        raise InvalidRequest("the request's input_hash does not match its inputs", field="input_hash")
    return Judged(spec, model.model_dump(mode="json"), digest)

