"""Models and the pure verdict of the ``autopilot.jobforge.healthcheck`` template."""

from __future__ import annotations

import enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class CheckStatus(enum.StrEnum):
    OK = "ok"
    FAILED = "failed"


class HealthcheckInputs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: task queues that must have a live poller; empty = every queue of the registry
    task_queues: list[str] = Field(default_factory=list)


class Check(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    status: CheckStatus
    detail: str
    data: dict[str, Any] = Field(default_factory=dict)


class HealthcheckReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    healthy: bool
    checks: list[Check]


def verdict(checks: list[Check]) -> HealthcheckReport:
    """Healthy when every check is ok (and there is at least one)."""
    return HealthcheckReport(healthy=bool(checks) and all(c.status is CheckStatus.OK for c in checks),
                             checks=checks)
