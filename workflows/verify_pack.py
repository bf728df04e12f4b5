"""``autopilot.readylayer.verify_pack``: lint, typecheck, build and test a repository, step by step.

prepare (locate or clone, plan, fingerprint, cache lookup) → install → the checks in the plan's stages
(Python: lint ∥ typecheck ∥ test, then build), or in its lanes side by side (Node: lint ∥ typecheck in a
snapshot of the tree install left, beside build → test in the run's tree) → finalize (report.json, manifest,
cache). Each step is an activity on
the verify task queue that heartbeats while its process group runs; a worker that dies mid-step
is noticed by the heartbeat timeout and the step is retried elsewhere, while the steps that had
finished are taken from history, not run again.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RawValue, RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

with workflow.unsafe.imports_passed_through():
    from activities.verify import VerifyActivities
    from shared.verify.fingerprint import compose
    from shared.verify.models import (
        TEMPLATE_KEY,
        FinalizeInput,
        InstallResult,
        Lane,
        Prepared,
        PrepareInput,
        Snapshot,
        SnapshotInput,
        StepInput,
        StepName,
        StepProgress,
        StepResult,
        StepStatus,
        VerifyInputs,
        VerifyProgress,
        VerifyReport,
    )
    from shared.verify.verdict import error_cause, log_artifacts, ordered, skipped, summary, unrun_steps, verdict

from workflows._job import accept, run_job

PREPARE_TIMEOUT = timedelta(minutes=20)
PREPARE_HEARTBEAT = timedelta(minutes=2)
FINALIZE_TIMEOUT = timedelta(minutes=2)
SNAPSHOT_TIMEOUT = timedelta(minutes=5)
STEP_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                         maximum_interval=timedelta(seconds=10), maximum_attempts=3)
BOOKKEEPING_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=10),
                                maximum_attempts=5)
WAIT = workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED


@workflow.defn(name=TEMPLATE_KEY)
class VerifyPackWorkflow:
    def __init__(self) -> None:
        self._progress = VerifyProgress()
        self._tenant = ""

    @workflow.run
    async def run(self, job: RawValue) -> VerifyReport:
        run = await accept(job)
        self._tenant = run.tenant_id
        return await run_job(run, self._verify_or_cancelled, summary)

    @workflow.query(name="progress")
    def progress(self) -> VerifyProgress:
        """Each step's status and when it started, for live displays."""
        return self._progress

    # -- progress bookkeeping (workflow state only)

    def _set(self, name: StepName, **changes: Any) -> None:
        steps = [s.model_copy(update=changes) if s.name is name else s for s in self._progress.steps]
        self._progress = self._progress.model_copy(update={"steps": steps})

    def _phase(self, phase: str, **changes: Any) -> None:
        self._progress = self._progress.model_copy(update={"phase": phase, **changes})

    # -- the run

    async def _verify_or_cancelled(self, raw_inputs: dict[str, Any]) -> VerifyReport:
        """A cancelled activity means a cancelled run (recorded as such), not a failed one."""
        try:
            return await self._verify(raw_inputs)
        except ActivityError as exc:
            if isinstance(exc.cause, CancelledError):
                raise exc.cause from None
            raise

    async def _verify(self, raw_inputs: dict[str, Any]) -> VerifyReport:
        inputs = VerifyInputs.model_validate(raw_inputs)
        info = workflow.info()
        started = workflow.now()
        self._phase("prepare")
        prepared = await workflow.execute_activity_method(
            VerifyActivities.prepare,
            PrepareInput(tenant_id=self._tenant, run_id=info.run_id, inputs=inputs, workflow_id=info.workflow_id),
            start_to_close_timeout=PREPARE_TIMEOUT, heartbeat_timeout=PREPARE_HEARTBEAT, retry_policy=STEP_RETRY,
            cancellation_type=WAIT,
        )
        plan = prepared.plan
        self._progress = VerifyProgress(
            phase="steps", sandboxed=prepared.sandbox.enabled, cached=prepared.cached is not None,
            steps=[StepProgress(name=StepName.INSTALL,
                                status=StepStatus.PENDING if plan.install.runnable else StepStatus.SKIPPED,
                                reason=plan.install.reason),
                   *(StepProgress(name=s.name, status=StepStatus.PENDING if s.runnable else StepStatus.SKIPPED,
                                  reason=s.reason) for s in plan.steps)],
        )
        if prepared.cached is not None:  # finalised by prepare already
            for result in prepared.cached.steps:
                self._set(result.name, status=result.status, duration_seconds=result.duration_seconds)
            self._phase("done")
            return prepared.cached  # its duration was measured by prepare, so replays reproduce it
        report = await self._run_steps(inputs, prepared)
        report = report.model_copy(update={"duration_seconds": self._since(started)})
        self._phase("finalize")
        final = await workflow.execute_activity_method(
            VerifyActivities.finalize,
            FinalizeInput(tenant_id=self._tenant, run_id=info.run_id, workflow_id=info.workflow_id, report=report,
                          workspace=prepared.workspace),
            start_to_close_timeout=FINALIZE_TIMEOUT, retry_policy=BOOKKEEPING_RETRY, cancellation_type=WAIT,
        )
        self._phase("done")
        return final

    @staticmethod
    def _since(started: datetime) -> float:
        return round((workflow.now() - started).total_seconds(), 3)

    async def _run_steps(self, inputs: VerifyInputs, prepared: Prepared) -> VerifyReport:
        plan = prepared.plan
        results: list[StepResult] = []
        install = await self._install(prepared)
        results.append(install.result)
        if install.result.status.is_failure or install.result.status.is_error:
            why = "install failed" if install.result.status.is_failure else "the environment could not be built"
            for result in unrun_steps(plan, [], why):
                results.append(result)
                self._set(result.name, status=StepStatus.SKIPPED, reason=result.reason)
        elif plan.lanes and (snapshot := await self._snapshot(prepared)) is not None:
            lanes = await asyncio.gather(*(self._lane(prepared, lane, snapshot) for lane in plan.lanes))
            results.extend(result for lane_results in lanes for result in lane_results)
        else:
            results.extend(await self._lane(prepared, Lane(stages=plan.stages), None))
        ran = {r.name for r in results}
        results += [skipped(plan, s.name) for s in plan.steps if s.name not in ran]
        results = ordered(results)
        outcome = verdict(results)
        return VerifyReport(
            tenant_id=self._tenant, run_id=workflow.info().run_id, source=inputs.source, pack=inputs.pack,
            toolchain=plan.toolchain, plan_source=plan.source, verdict=outcome, passed=outcome.value == "passed",
            steps=results, fingerprint=compose(prepared.fingerprint_parts, install.tool_versions),
            fingerprint_parts=prepared.fingerprint_parts, sandbox=prepared.sandbox, artifacts=log_artifacts(results),
            notes=plan.notes, toolchains=plan.provisioned, error=error_cause(results),
        )

    def _step_options(self, prepared: Prepared) -> dict[str, Any]:
        return {
            "start_to_close_timeout": timedelta(seconds=prepared.timeout_seconds + prepared.kill_grace_seconds + 120),
            "heartbeat_timeout": timedelta(seconds=prepared.heartbeat_timeout_seconds),
            "retry_policy": STEP_RETRY,
            "cancellation_type": WAIT,
        }

    async def _install(self, prepared: Prepared) -> InstallResult:
        install = prepared.plan.install
        # decided by prepare: no activity round trip for nothing
        if not prepared.install_needed and not prepared.plan.error:
            reason = install.reason or f"environment up to date (install key {prepared.plan.install_key[:19]}…)"
            skipped_install = StepResult(name=StepName.INSTALL, status=StepStatus.SKIPPED, command=install.display,
                                         reason=reason)
            self._set(StepName.INSTALL, status=StepStatus.SKIPPED, reason=reason)
            return InstallResult(result=skipped_install, tool_versions=prepared.tool_versions)
        request = StepInput(tenant_id=self._tenant, run_id=workflow.info().run_id, prepared=prepared,
                            step=StepName.INSTALL)
        if prepared.plan.install.runnable or prepared.plan.error:
            self._set(StepName.INSTALL, status=StepStatus.RUNNING, started_at=workflow.now())
        try:
            result: InstallResult = await workflow.execute_activity_method(
                VerifyActivities.install, request, **self._step_options(prepared))
        except ActivityError as exc:
            if isinstance(exc.cause, CancelledError):
                raise
            result = InstallResult(result=self._infra_failure(StepName.INSTALL, prepared, exc))
        self._set(StepName.INSTALL, status=result.result.status, duration_seconds=result.result.duration_seconds,
                  reason=result.result.reason)
        return result

    async def _snapshot(self, prepared: Prepared) -> Snapshot | None:
        """The copy of the tree install left that the snapshot lanes run in; None when it cannot be made (the
        stages then run one after another in the run's tree, as without lanes: slower, the same results)."""
        request = SnapshotInput(tenant_id=self._tenant, run_id=workflow.info().run_id, prepared=prepared)
        try:
            snapshot: Snapshot = await workflow.execute_activity_method(
                VerifyActivities.snapshot, request, start_to_close_timeout=SNAPSHOT_TIMEOUT,
                heartbeat_timeout=timedelta(seconds=prepared.heartbeat_timeout_seconds), retry_policy=STEP_RETRY,
                cancellation_type=WAIT)
        except ActivityError as exc:
            if isinstance(exc.cause, CancelledError):
                raise
            workflow.logger.warning("verify_snapshot_failed", extra={"reason": str(exc.cause or exc),
                                                                     "then": "the stages, one after another"})
            return None
        return snapshot

    async def _lane(self, prepared: Prepared, lane: Lane, snapshot: Snapshot | None) -> list[StepResult]:
        """The lane's groups one after another, the steps of a group side by side (in the snapshot for a
        snapshot lane)."""
        tree = snapshot.tree if snapshot is not None and lane.snapshot else ""
        results: list[StepResult] = []
        for stage in lane.stages:
            results.extend(await asyncio.gather(*(self._step(prepared, name, tree) for name in stage)))
        return results

    async def _step(self, prepared: Prepared, name: StepName, tree: str = "") -> StepResult:
        self._set(name, status=StepStatus.RUNNING, started_at=workflow.now())
        request = StepInput(tenant_id=self._tenant, run_id=workflow.info().run_id, prepared=prepared, step=name,
                            tree=tree)
        try:
            result: StepResult = await workflow.execute_activity_method(
                VerifyActivities.run_step, request, **self._step_options(prepared))
        except ActivityError as exc:
            if isinstance(exc.cause, CancelledError):
                raise
            result = self._infra_failure(name, prepared, exc)
        self._set(name, status=result.status, duration_seconds=result.duration_seconds, reason=result.reason)
        return result

    @staticmethod
    def _infra_failure(name: StepName, prepared: Prepared, exc: ActivityError) -> StepResult:
        """A step whose activity failed for good (no worker could run it): an error, not the repository's."""
        cause = exc.cause
        message = cause.message if isinstance(cause, ApplicationError) else str(cause or exc)
        spec = prepared.plan.step(name)
        return StepResult(name=name, status=StepStatus.ERROR, command=spec.display, origin=spec.origin,
                          reason=f"the step could not run: {message}"[:1000])
