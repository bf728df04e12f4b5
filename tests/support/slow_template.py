"""A test-only template module, loaded through ``JOBFORGE_TEMPLATE_MODULES``.

``testing.jobforge.slow`` runs one activity that heartbeats for ``seconds`` and then records that it
finished in a marker file, so tests can interrupt a worker mid-run and see the run complete later.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict
from temporalio import activity, workflow
from temporalio.common import RawValue, RetryPolicy

with workflow.unsafe.imports_passed_through():
    from shared.templates import TemplateSpec
    from workflows._job import run_job


class SlowInputs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    seconds: float = 1.0
    marker_dir: str


class SlowResult(BaseModel):
    attempts: int


@activity.defn(name="testing.slow_step")
async def slow_step(inputs: SlowInputs) -> SlowResult:
    """Heartbeat for ``seconds``; append this attempt to ``started`` and then to ``finished``."""
    marker = Path(inputs.marker_dir)
    with (marker / "started").open("a") as f:
        f.write(f"{activity.info().attempt}\n")
    loop = asyncio.get_running_loop()
    end = loop.time() + inputs.seconds
    while loop.time() < end:
        activity.heartbeat()
        await asyncio.sleep(0.1)
    with (marker / "finished").open("a") as f:
        f.write(f"{activity.info().attempt}\n")
    return SlowResult(attempts=activity.info().attempt)


@workflow.defn(name="testing.jobforge.slow")
class SlowWorkflow:
    @workflow.run
    async def run(self, job: RawValue) -> SlowResult:
        return await run_job(job, self._body, lambda r: {"attempts": r.attempts})

    async def _body(self, raw: dict[str, Any]) -> SlowResult:
        return await workflow.execute_activity(
            slow_step, SlowInputs.model_validate(raw), start_to_close_timeout=timedelta(seconds=60),
            heartbeat_timeout=timedelta(seconds=1),
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=100)))


TEMPLATES = [TemplateSpec(key="testing.jobforge.slow", description="Heartbeats for a while (tests only).",
                          input_model=SlowInputs, output_model=SlowResult)]


def build_activities(_runtime: object) -> list[Callable[..., Any]]:
    return [slow_step]
