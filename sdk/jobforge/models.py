"""The typed objects that cross process and Temporal boundaries.

New fields always get defaults so that histories recorded by older code still decode.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RunStatus(enum.StrEnum):
    #: started and handed out, not admitted yet (the record written when the run id is handed out; a
    #: run started straight through Temporal has no record until admission)
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"

    @property
    def is_final(self) -> bool:
        return self not in (RunStatus.QUEUED, RunStatus.RUNNING)

    @classmethod
    def final(cls) -> tuple[RunStatus, ...]:
        return tuple(status for status in cls if status.is_final)


class JobRun(Frozen):
    """What every template workflow receives: the request envelope (inputs not yet validated)."""

    tenant_id: str
    template_key: str
    inputs: dict[str, Any] = Field(default_factory=dict)
    trace_id: str = ""
    actor: str = "unknown"
    idempotency_key: str | None = None
    input_hash: str = ""
    #: a signed admission receipt from the HTTP ingress / SDK gate (not a secret: bound to this
    #: workflow id, single-use); without one, admission applies the full gate as an operator request
    receipt: str = ""
    #: for action jobs started without a receipt: the one-way reference (``sha256:...``) of a policy
    #: token, never the token itself (docs/security.md)
    policy_ref: str = ""


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


class RunRecord(Frozen):
    """A run as the store knows it."""

    tenant_id: str
    template_key: str
    workflow_id: str
    run_id: str
    status: RunStatus
    trace_id: str
    actor: str
    idempotency_key: str | None
    input_hash: str
    summary: dict[str, Any]
    error: str
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


class RunHandleInfo(Frozen):
    """What ``request_job`` answers: the run it started (or the one the idempotency key names)."""

    tenant_id: str
    template_key: str
    workflow_id: str
    run_id: str
    trace_id: str
    #: False when an earlier request with the same idempotency key already started this run
    created: bool


class ArtifactRecord(Frozen):
    """A file a run produced, as the store knows it (the bytes lie in the artifact store)."""

    id: int
    tenant_id: str
    run_id: str
    name: str
    kind: str
    media_type: str
    sha256: str
    size: int
    #: relative to the artifact store's root
    path: str
    created_at: datetime


class VerifyCacheEntry(Frozen):
    """A passed verify-pack verdict, keyed by (tenant, code fingerprint)."""

    tenant_id: str
    fingerprint: str
    verdict: str
    report: dict[str, Any]
    run_id: str
    created_at: datetime


class EventEnvelope(Frozen):
    """An immutable event a product app submits."""

    tenant_id: str
    event_id: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:-]+$")
    event_type: str = Field(min_length=1, max_length=200, pattern=r"^[a-z0-9_]+(\.[a-z0-9_]+)*$")
    trace_id: str = ""
    source_app: str = Field(default="", max_length=100)
    source_module: str = Field(default="", max_length=200)
    payload: dict[str, Any] = Field(default_factory=dict)
    occurred_at: datetime | None = None


class EventReceipt(Frozen):
    """What ``submit_event`` answers: admitted, or a duplicate pointing at the original."""

    tenant_id: str
    event_id: str
    event_type: str
    trace_id: str
    duplicate: bool
    #: when the original copy was first seen, and its trace id
    first_seen_at: datetime
    original_trace_id: str
    payload_hash: str
