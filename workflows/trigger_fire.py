"""``jobforge.trigger.fire``: one fire of a trigger (from its Schedule or `jobforge triggers fire`)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.triggers import TriggerActivities
    from jobforge.errors import TriggerInputInvalid
    from jobforge.models import FireOutcome
    from shared.temporal import to_application_error
    from shared.triggers.models import FireContext, FireRefusal, FireRequest, read_fire_input
    from shared.triggers.schedules import trigger_of_fire_id

FIRE_TIMEOUT = timedelta(seconds=15)
FIRE_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=10))


# an argument the SDK cannot decode at all (an unknown encoding: KeyError; bad JSON: RuntimeError) fails the
# fire instead of its workflow task, forever
@workflow.defn(name="jobforge.trigger.fire", sandboxed=False, failure_exception_types=[KeyError, RuntimeError])
class TriggerFireWorkflow:
    @workflow.run
    async def run(self, *args: Any) -> FireOutcome:
        """Decide the fire. The arguments are read here, not by the SDK, so a Schedule whose action lost its
        input (a stock ``temporal schedule update``) fails each fire at once with ``trigger_input_invalid``,
        recorded as a skipped fire of the trigger its workflow id names, instead of retrying a workflow
        task forever."""
        info = workflow.info()
        try:
            req = read_fire_input(args)
        except TriggerInputInvalid as err:
            named = trigger_of_fire_id(info.workflow_id)
            if named is not None:
                await workflow.execute_local_activity_method(
                    TriggerActivities.fire_refused,
                    FireRefusal(tenant_id=named[0], trigger_name=named[1], fire_key=f"{info.workflow_id}#{info.run_id}",
                                reason=err.message.replace("NAME", f"{named[1]} --tenant {named[0]}")),
                    start_to_close_timeout=FIRE_TIMEOUT, retry_policy=FIRE_RETRY)
            raise to_application_error(err) from None
        # a scheduled workflow's id carries its scheduled time, so each fire has its own key
        return await workflow.execute_local_activity_method(
            TriggerActivities.fire,
            FireRequest(trigger_id=req.trigger_id, fire_key=f"{info.workflow_id}#{info.run_id}",
                        context=FireContext(source=req.source, actor=req.actor)),
            start_to_close_timeout=FIRE_TIMEOUT, retry_policy=FIRE_RETRY,
        )
