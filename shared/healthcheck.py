"""Models and the pure verdict of the ``autopilot.jobforge.healthcheck`` template."""

from __future__ import annotations

import enum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints


class CheckStatus(enum.StrEnum):
    OK = "ok"
    FAILED = "failed"


TaskQueueName = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=r"^[^\s\x00-\x1f\x7f]+$")]


class HealthcheckInputs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: task queues that must have a live poller; empty = every queue of the registry. A name is what
    #: Temporal takes (1-255 characters, no whitespace or control characters), refused here otherwise
    task_queues: list[TaskQueueName] = Field(default_factory=list, max_length=100)


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
