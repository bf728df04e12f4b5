"""Rows of the ``runs`` table as typed records, and the filters of a tenant's runs (no SQLAlchemy: the CLI's
``runs list`` uses them too)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jobforge.models import RunRecord, RunStatus


@dataclass(frozen=True, slots=True)
class RunFilter:
    """Which of a tenant's runs a page shows (every field optional; all given ones must hold)."""

    template_key: str | None = None
    status: RunStatus | None = None
    #: runs started by the fires of this trigger (its id)
    trigger_id: str | None = None
    trace_id: str | None = None
    #: created at or after / before
    since: datetime | None = None
    until: datetime | None = None

    def bound(self) -> dict[str, object]:
        """The filters that are set, by the parameter name of their clause (``statements.RUNS_FILTERS``)."""
        values = {"template_key": self.template_key, "status": self.status.value if self.status else None,
                  "trigger_id": self.trigger_id, "trace_id": self.trace_id, "since": self.since, "until": self.until}
        return {name: value for name, value in values.items() if value is not None and value != ""}


def run_record(row: Mapping[str, Any]) -> RunRecord:
    """The record of a ``runs`` row (column -> value)."""
    return RunRecord(
        tenant_id=row["tenant_id"], template_key=row["template_key"], workflow_id=row["workflow_id"],
        run_id=row["run_id"], status=RunStatus(row["status"]), trace_id=row["trace_id"], actor=row["actor"],
        idempotency_key=row["idempotency_key"], input_hash=row["input_hash"], summary=row["summary"] or {},
        error=row["error"] or "", created_at=row["created_at"], updated_at=row["updated_at"],
        finished_at=row["finished_at"],
    )
