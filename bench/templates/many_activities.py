"""A bench-only template (never in the production registry), loaded through ``JOBFORGE_TEMPLATE_MODULES``.

``bench.jobforge.many`` runs ``activities`` trivial activities, ``batch`` at a time, so its history
has about ``3 * activities`` events plus the workflow tasks: 280 in batches of 32 give ~1,000 events.
Used by ``bench/replay.py`` (module name ``bench.templates.many_activities``).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RawValue

with workflow.unsafe.imports_passed_through():
    from bench.templates.many_models import (
        KEY,
        TEMPLATES,
        ManyInputs,
        ManyResult,
        NoopInput,
        build_activities,
        noop,
    )
    from workflows._job import run_job

__all__ = ["KEY", "TEMPLATES", "ManyActivitiesWorkflow", "build_activities"]


@workflow.defn(name=KEY)
class ManyActivitiesWorkflow:
    @workflow.run
    async def run(self, job: RawValue) -> ManyResult:
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
