"""A bench-only template (never in the production registry), loaded through ``JOBFORGE_TEMPLATE_MODULES``.

``bench.jobforge.many`` runs ``activities`` trivial activities, ``batch`` at a time, so its history
has about ``3 * activities`` events plus the workflow tasks: 280 in batches of 32 give ~1,000 events.
Used by ``bench/replay.py`` (module name ``bench.templates.many_activities``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from temporalio import activity, workflow

with workflow.unsafe.imports_passed_through():
    from shared.models import JobRun
    from shared.templates import TemplateSpec
    from workflows._job import run_job

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


@workflow.defn(name=KEY)
class ManyActivitiesWorkflow:
    @workflow.run
    async def run(self, job: JobRun) -> ManyResult:
        return await run_job(job, self._body, lambda r: {"activities": r.activities})

    async def _body(self, raw: dict[str, Any]) -> ManyResult:
        inputs = ManyInputs.model_validate(raw)
        total = 0
        for start in range(0, inputs.activities, inputs.batch):
            stop = min(start + inputs.batch, inputs.activities)
            done = await asyncio.gather(*(
                workflow.execute_activity(noop, NoopInput(index=i), start_to_close_timeout=timedelta(seconds=30))
                for i in range(start, stop)))
            total += sum(r.index for r in done)
        return ManyResult(activities=inputs.activities, total=total)


TEMPLATES = [TemplateSpec(key=KEY, description="Many trivial activities (benchmarks only).",
                          input_model=ManyInputs, output_model=ManyResult)]


def build_activities(_runtime: object) -> list[Callable[..., Any]]:
    return [noop]
