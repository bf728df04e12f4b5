"""Workflow code 'changed since the run': used to prove replay verification catches nondeterminism."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from jobforge.models import JobRun


@workflow.defn(name="autopilot.jobforge.healthcheck")
class ChangedHealthcheck:
    """Today's 'code' with a changed command sequence: it sleeps before doing anything."""

    @workflow.run
    async def run(self, job: JobRun) -> dict[str, bool]:
        await workflow.sleep(timedelta(seconds=1))
        return {"healthy": bool(job.tenant_id)}
