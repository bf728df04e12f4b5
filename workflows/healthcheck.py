"""``autopilot.jobforge.healthcheck``: is this JobForge installation able to run jobs?"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RawValue, RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.healthcheck import HealthcheckActivities
    from shared.healthcheck import HealthcheckInputs, HealthcheckReport, verdict

from workflows._job import run_job

CHECK_TIMEOUT = timedelta(seconds=20)
CHECK_RETRY = RetryPolicy(maximum_attempts=3)


@workflow.defn(name="autopilot.jobforge.healthcheck")
class HealthcheckWorkflow:
    @workflow.run
    async def run(self, job: RawValue) -> HealthcheckReport:
        return await run_job(job, self._check, lambda report: {"healthy": report.healthy})

    async def _check(self, raw_inputs: dict[str, object]) -> HealthcheckReport:
        inputs = HealthcheckInputs.model_validate(raw_inputs)
        checks = await asyncio.gather(
            workflow.execute_activity_method(HealthcheckActivities.check_database,
                                             start_to_close_timeout=CHECK_TIMEOUT, retry_policy=CHECK_RETRY),
            workflow.execute_activity_method(HealthcheckActivities.check_temporal,
                                             start_to_close_timeout=CHECK_TIMEOUT, retry_policy=CHECK_RETRY),
            workflow.execute_activity_method(HealthcheckActivities.check_pollers, inputs,
                                             start_to_close_timeout=CHECK_TIMEOUT, retry_policy=CHECK_RETRY),
        )
        return verdict(list(checks))
