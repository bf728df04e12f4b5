"""A test-only template for replay dry runs, loaded through ``JOBFORGE_TEMPLATE_MODULES``.

``testing.jobforge.sidequeue`` uses what a dry run must cope with: an activity scheduled on another
task queue (``side_queue``, served by a worker of the test's own), a durable timer of ``seconds``,
and a query. Its activity is not registered by JobForge's worker (``build_activities`` is empty).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict
from temporalio import activity, workflow
from temporalio.common import RawValue, RetryPolicy

with workflow.unsafe.imports_passed_through():
    from shared.templates import TemplateSpec
    from workflows._job import run_job

KEY = "testing.jobforge.sidequeue"


class SideQueueInputs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    side_queue: str
    seconds: float = 1.0
    name: str = "replay"


class SideQueueResult(BaseModel):
    greeting: str
    slept_seconds: float


class GreetInput(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str


class GreetResult(BaseModel):
    greeting: str


@activity.defn(name="testing.side_greet")
async def side_greet(req: GreetInput) -> GreetResult:
    """Greet ``name`` (runs on the side task queue)."""
    return GreetResult(greeting=f"hello {req.name}")


@workflow.defn(name=KEY)
class SideQueueWorkflow:
    def __init__(self) -> None:
        self._phase = "admission"

    @workflow.query(name="phase")
    def phase(self) -> str:
        return self._phase

    @workflow.run
    async def run(self, job: RawValue) -> SideQueueResult:
        return await run_job(job, self._body, lambda r: {"greeting": r.greeting})

    async def _body(self, raw: dict[str, Any]) -> SideQueueResult:
        inputs = SideQueueInputs.model_validate(raw)
        self._phase = "greeting"
        greeted = await workflow.execute_activity(
            side_greet, GreetInput(name=inputs.name), task_queue=inputs.side_queue,
            start_to_close_timeout=timedelta(seconds=30), retry_policy=RetryPolicy(maximum_attempts=3))
        self._phase = "sleeping"
        await workflow.sleep(timedelta(seconds=inputs.seconds))
        self._phase = "done"
        return SideQueueResult(greeting=greeted.greeting, slept_seconds=inputs.seconds)


TEMPLATES = [TemplateSpec(key=KEY, description="An activity on another task queue, then a timer (tests only).",
                          input_model=SideQueueInputs, output_model=SideQueueResult)]


def build_activities(_runtime: object) -> list[Callable[..., Any]]:
    return []
