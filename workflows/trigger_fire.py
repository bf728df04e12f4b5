"""``jobforge.trigger.fire``: one fire of a trigger (from its Schedule or `jobforge triggers fire`)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.triggers import TriggerActivities
    from shared.triggers.models import FireContext, FireOutcome, FireRequest, TriggerFireInput

FIRE_TIMEOUT = timedelta(seconds=15)
FIRE_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=10))


@workflow.defn(name="jobforge.trigger.fire", sandboxed=False)
class TriggerFireWorkflow:
    @workflow.run
    async def run(self, req: TriggerFireInput) -> FireOutcome:
        info = workflow.info()
        # a scheduled workflow's id carries its scheduled time, so each fire has its own key
        return await workflow.execute_local_activity_method(
            TriggerActivities.fire,
            FireRequest(trigger_id=req.trigger_id, fire_key=f"{info.workflow_id}#{info.run_id}",
                        context=FireContext(source=req.source, actor=req.actor)),
            start_to_close_timeout=FIRE_TIMEOUT, retry_policy=FIRE_RETRY,
        )
