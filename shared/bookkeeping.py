"""What the bookkeeping steps of every template run take and answer: admission (``jobforge.admit``), the
refusal of a run admission could not read (``jobforge.refuse_run``) and the final record
(``jobforge.finish_run``). These cross only the server's own Temporal boundary (workflow to local activity),
so they are the server's, not the SDK's wire contract. New fields get defaults: recorded histories decode them.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, SerializerFunctionWrapHandler, model_serializer

from jobforge.models import Frozen, JobRun, RunStatus


class AdmissionInput(Frozen):
    run: JobRun
    workflow_id: str
    run_id: str
    #: the workflow type the run was started as; must match the template key
    workflow_type: str
    #: the JobForge search attributes the run was started with (name -> value); must not contradict ``run``
    search_attributes: dict[str, str] = Field(default_factory=dict)


class AdmissionResult(Frozen):
    admitted: bool
    reason: str = ""
    error_code: str = ""
    error_details: dict[str, Any] = Field(default_factory=dict)
    #: the template inputs after validation against the template's model (defaults filled in)
    inputs: dict[str, Any] = Field(default_factory=dict)
    #: empty: the run record keeps the input hash (histories recorded before admission left it out hold it)
    input_hash: str = ""
    #: whether the run should capture its provenance (JOBFORGE_REPLAY_PACK_ENABLED at admission)
    capture_provenance: bool = True
    #: empty: the trace id is the JobForgeTrace attribute's in ``search_attributes`` (older histories hold it)
    trace_id: str = ""
    #: the JobForge search attributes the run must carry (name -> value), set by the workflow
    search_attributes: dict[str, str] = Field(default_factory=dict)

    @model_serializer(mode="wrap")
    def _without_defaults(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Fields at their default are left out: the result is recorded in every run's history, and
        decoding fills them in again."""
        data: dict[str, Any] = handler(self)
        for name, field in type(self).model_fields.items():
            if not field.is_required() and name in data and data[name] == field.get_default(
                    call_default_factory=True):
                del data[name]
        return data


class RefusalInput(Frozen):
    """A run refused before admission could read it: a malformed argument or an unknown workflow type."""

    workflow_type: str
    task_queue: str
    workflow_id: str
    run_id: str
    #: the tenant as far as the argument (or its JobForgeTenant attribute) tells; "" when unreadable
    tenant_id: str = ""
    trace_id: str = ""
    actor: str = "unknown"
    #: the error found by the workflow; "" for an unknown workflow type (the activity names the templates)
    error_code: str = ""
    reason: str = ""
    error_details: dict[str, Any] = Field(default_factory=dict)


class RefusalResult(Frozen):
    error_code: str
    reason: str
    error_details: dict[str, Any] = Field(default_factory=dict)
    #: the JobForge search attributes the refused run should carry (name -> value)
    search_attributes: dict[str, str] = Field(default_factory=dict)


class FinishRunInput(Frozen):
    tenant_id: str
    workflow_id: str
    run_id: str
    status: RunStatus
    summary: dict[str, Any] = Field(default_factory=dict)
    error: str = ""
