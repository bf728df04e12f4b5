"""The frame every template workflow runs in: admission first, the run record last.

The bookkeeping steps (admission, provenance capture, the final run record) are *local* activities:
they run on the worker that holds the workflow task, inside that task, and are recorded as markers,
so they cost the Temporal server no activity tasks and the run no extra workflow tasks (a template
with one activity runs in two workflow tasks, as a bare Temporal workflow does). Their retry policy
is the same unlimited, backed-off one. Histories recorded before this change (regular activities)
replay on the old path (``workflow.patched``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, FailureError

with workflow.unsafe.imports_passed_through():
    from activities.provenance import CaptureProvenanceInput, ProvenanceActivities
    from activities.runs import RunActivities
    from shared.models import AdmissionInput, AdmissionResult, FinishRunInput, JobRun, RunStatus

T = TypeVar("T")

BOOKKEEPING_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=10),
                                maximum_attempts=0)
BOOKKEEPING_TIMEOUT = timedelta(seconds=30)
LOCAL_BOOKKEEPING = "jobforge.bookkeeping-local"


async def _bookkeeping(method: Callable[..., Awaitable[Any]], arg: Any,
                       start_to_close: timedelta = BOOKKEEPING_TIMEOUT) -> Any:
    """Run a bookkeeping activity: local on current histories, a regular activity on older ones."""
    if workflow.patched(LOCAL_BOOKKEEPING):
        return await workflow.execute_local_activity_method(method, arg, start_to_close_timeout=start_to_close,
                                                            retry_policy=BOOKKEEPING_RETRY)
    return await workflow.execute_activity_method(method, arg, start_to_close_timeout=start_to_close,
                                                  retry_policy=BOOKKEEPING_RETRY)


async def admit(job: JobRun) -> AdmissionResult:
    info = workflow.info()
    result: AdmissionResult = await _bookkeeping(
        RunActivities.admit,
        AdmissionInput(run=job, workflow_id=info.workflow_id, run_id=info.run_id,
                       workflow_type=info.workflow_type))
    return result


async def finish(job: JobRun, status: RunStatus, summary: dict[str, Any] | None = None, error: str = "") -> None:
    info = workflow.info()
    await _bookkeeping(
        RunActivities.finish_run,
        FinishRunInput(tenant_id=job.tenant_id, workflow_id=info.workflow_id, run_id=info.run_id, status=status,
                       summary=summary or {}, error=error[:2000]))


def _failure_message(exc: BaseException) -> tuple[str, str]:
    """(type, message) of the innermost application failure, for the run record."""
    current: BaseException | None = exc
    found: tuple[str, str] = (type(exc).__name__, str(exc))
    while current is not None:
        if isinstance(current, ApplicationError):
            found = (current.type or "ApplicationError", current.message)
        current = current.cause if isinstance(current, FailureError) else None
    return found


async def capture_provenance(job: JobRun, inputs: dict[str, Any], code_path: str | None) -> None:
    await _bookkeeping(
        ProvenanceActivities.capture_provenance,
        CaptureProvenanceInput(tenant_id=job.tenant_id, template_key=job.template_key,
                               run_id=workflow.info().run_id, inputs=inputs, code_path=code_path),
        timedelta(seconds=60))


async def run_job(job: JobRun, body: Callable[[dict[str, Any]], Awaitable[T]],
                  summarise: Callable[[T], dict[str, Any]],
                  code_path: Callable[[dict[str, Any]], str | None] | None = None) -> T:
    """Admit ``job``, capture its provenance, run ``body(validated_inputs)``, record the outcome.

    ``code_path`` picks the repository the run works on out of its inputs, for the provenance.
    """
    admission = await admit(job)
    if not admission.admitted:
        raise ApplicationError(admission.reason, admission.error_details, type=admission.error_code,
                               non_retryable=True)
    try:
        # current histories skip the step when admission found JOBFORGE_REPLAY_PACK_ENABLED off; a
        # provenance step that fails for good fails the run (recorded) instead of leaving it running
        if admission.capture_provenance or not workflow.patched(LOCAL_BOOKKEEPING):
            await capture_provenance(job, admission.inputs, code_path(admission.inputs) if code_path else None)
        result = await body(admission.inputs)
    except (asyncio.CancelledError, CancelledError):
        await asyncio.shield(asyncio.ensure_future(finish(job, RunStatus.CANCELLED, error="cancelled")))
        raise
    except (ActivityError, ApplicationError) as exc:
        code, message = _failure_message(exc)
        await finish(job, RunStatus.FAILED, {"error_type": code}, message)
        raise ApplicationError(message, type=code, non_retryable=True) from exc
    await finish(job, RunStatus.SUCCEEDED, summarise(result))
    return result
