"""JobForge workflows as they were before a change, to record histories that today's code must replay."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.triggers import TriggerActivities
    from jobforge.models import FireOutcome
    from shared.triggers.models import FireContext, FireRequest, TriggerFireInput
    from workflows.trigger_fire import FIRE_RETRY, FIRE_TIMEOUT


@workflow.defn(name="jobforge.trigger.fire", sandboxed=False)
class EarlierTriggerFire:
    """``jobforge.trigger.fire`` before it read its own arguments: the input typed in the run signature."""

    @workflow.run
    async def run(self, req: TriggerFireInput) -> FireOutcome:
        info = workflow.info()
        return await workflow.execute_local_activity_method(
            TriggerActivities.fire,
            FireRequest(trigger_id=req.trigger_id, fire_key=f"{info.workflow_id}#{info.run_id}",
                        context=FireContext(source=req.source, actor=req.actor)),
            start_to_close_timeout=FIRE_TIMEOUT, retry_policy=FIRE_RETRY)
