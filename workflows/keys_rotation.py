"""``autopilot.keys.rotation``: rotate a tenant's API key with a grace period (a durable timer)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RawValue, RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.keys import KeyActivities, RevokeInput, SuccessorInput, SuccessorResult
    from shared.keys_rotation import KeyRotationInputs, KeyRotationResult

from workflows._job import accept, run_job

STEP_TIMEOUT = timedelta(seconds=30)
STEP_RETRY = RetryPolicy(maximum_attempts=5, non_retryable_error_types=["api_key_not_found", "invalid_request"])


@workflow.defn(name="autopilot.keys.rotation")
class KeysRotationWorkflow:
    def __init__(self) -> None:
        self._phase = "admission"
        self._successor: SuccessorResult | None = None

    @workflow.query(name="phase")
    def phase(self) -> str:
        return self._phase

    @workflow.query(name="successor")
    def successor(self) -> SuccessorResult | None:
        """The new key (its secret sealed) once it exists: usable during the grace period, before the result."""
        return self._successor

    @workflow.run
    async def run(self, job: RawValue) -> KeyRotationResult:
        self._job = await accept(job)
        return await run_job(self._job, self._rotate, lambda r: {"old_key_id": r.old_key_id, "new_key_id": r.new_key_id,
                                                            "grace_seconds": r.grace_seconds})

    async def _rotate(self, raw: dict[str, Any]) -> KeyRotationResult:
        inputs = KeyRotationInputs.model_validate(raw)
        self._phase = "creating successor"
        successor = await workflow.execute_activity_method(
            KeyActivities.create_successor,
            SuccessorInput(tenant_id=self._job.tenant_id, key_id=inputs.key_id,
                           recipient_public_key=inputs.recipient_public_key,
                           marker=f"rotation of {inputs.key_id} by run {workflow.info().run_id}"),
            start_to_close_timeout=STEP_TIMEOUT, retry_policy=STEP_RETRY)
        self._successor = successor
        self._phase = "grace period"
        await workflow.sleep(timedelta(seconds=inputs.grace_seconds))
        self._phase = "revoking old key"
        revoked = await workflow.execute_activity_method(
            KeyActivities.revoke, RevokeInput(tenant_id=self._job.tenant_id, key_id=inputs.key_id),
            start_to_close_timeout=STEP_TIMEOUT, retry_policy=STEP_RETRY)
        self._phase = "done"
        return KeyRotationResult(old_key_id=inputs.key_id, new_key_id=successor.new_key_id, scopes=successor.scopes,
                                 sealed_secret=successor.sealed_secret, grace_seconds=inputs.grace_seconds,
                                 old_key_revoked=revoked)
