"""The typed objects that cross process and Temporal boundaries.

New fields always get defaults so that histories recorded by older code still decode.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RunStatus(enum.StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"

    @property
    def is_final(self) -> bool:
        return self is not RunStatus.RUNNING


class JobRun(Frozen):
    """What every template workflow receives: the request envelope (inputs not yet validated)."""

    tenant_id: str
    template_key: str
    inputs: dict[str, Any] = Field(default_factory=dict)
    trace_id: str = ""
    actor: str = "unknown"
    idempotency_key: str | None = None
    input_hash: str = ""


class AdmissionInput(Frozen):
    run: JobRun
    workflow_id: str
    run_id: str
    #: the workflow type the run was started as; must match the template key
    workflow_type: str


class AdmissionResult(Frozen):
    admitted: bool
    reason: str = ""
    error_code: str = ""
    error_details: dict[str, Any] = Field(default_factory=dict)
    #: the template inputs after validation against the template's model (defaults filled in)
    inputs: dict[str, Any] = Field(default_factory=dict)
    input_hash: str = ""


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
