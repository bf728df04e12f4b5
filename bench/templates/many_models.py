"""Models, the activity and the template spec of ``bench.jobforge.many`` (see ``many_activities.py``).

Kept out of the workflow's module, as JobForge's own templates keep theirs in ``shared``: the
workflow sandbox re-imports a workflow's module for every run, and imports it passes through
(these) are shared instead of being rebuilt each time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from temporalio import activity

from shared.templates import TemplateSpec

KEY = "bench.jobforge.many"


class ManyInputs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    activities: int = Field(default=280, ge=1, le=5000)
    batch: int = Field(default=32, ge=1, le=500)


class ManyResult(BaseModel):
    activities: int
    total: int


class NoopInput(BaseModel):
    model_config = ConfigDict(frozen=True)

    index: int


class NoopResult(BaseModel):
    index: int


@activity.defn(name="bench.noop")
async def noop(req: NoopInput) -> NoopResult:
    """Answer at once with the index it was given."""
    return NoopResult(index=req.index)


TEMPLATES = [TemplateSpec(key=KEY, description="Many trivial activities (benchmarks only).",
                          input_model=ManyInputs, output_model=ManyResult)]


def build_activities(_runtime: object) -> list[Callable[..., Any]]:
    return [noop]
