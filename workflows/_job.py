"""The frame every template workflow runs in: admission first, the run record last.

The bookkeeping steps (admission, provenance capture, the final run record) are *local* activities:
they run on the worker that holds the workflow task, inside that task, and are recorded as markers,
so they cost the Temporal server no activity tasks and the run no extra workflow tasks (a template
with one activity runs in two workflow tasks, as a bare Temporal workflow does). Their retry policy
is the same unlimited, backed-off one. Histories recorded when they were regular activities take that
path (``workflow.patched("jobforge.bookkeeping-local")``): JobForge keeps runs' histories beyond
Temporal's retention (``run_histories``) and verifies bundles by replaying them against this code, so
the branch stays (``tests/unit/test_recorded_histories.py`` replays such histories). A run JobForge
starts says in its memo that its bookkeeping is local (``shared.starts.BOOKKEEPING_MEMO``), so it
records neither the patch's marker nor the ``TemporalChangeVersion`` upsert that comes with it; a raw
start without that memo takes the patched path, marker included.

A template workflow takes its argument undecoded (``job: RawValue``) and :func:`run_job` decodes it,
so whatever a user sends through Temporal is answered: a malformed argument (or none, or several:
:class:`JobArguments`) fails the run at once with ``invalid_run_argument`` naming the fields,
recorded and audited as a rejected run of its tenant when the tenant can be read (:func:`refuse`).
Admission decides the run's JobForge search attributes from its argument and the workflow sets them.
No history recorded before that upsert can reach it (their admission results carry no attributes), so
its patch is deprecated (``workflow.deprecate_patch``: histories recorded with the marker still replay).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any, NoReturn, TypeVar

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RawValue, RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    FailureError,
    is_cancelled_exception,
)
from temporalio.worker import (
    ExecuteWorkflowInput,
    Interceptor,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
)

with workflow.unsafe.imports_passed_through():
    from activities.provenance import CaptureProvenanceInput, ProvenanceActivities
    from activities.runs import RunActivities
    from jobforge.errors import InvalidRunArgument, JobForgeError
    from jobforge.models import JobRun, RunStatus
    from shared.bookkeeping import AdmissionInput, AdmissionResult, FinishRunInput, RefusalInput, RefusalResult
    from shared.run_argument import (
        argument_count_error,
        parse_argument,
        parse_job_run,
        readable_actor,
        readable_tenant,
        readable_trace,
    )
    from shared.starts import BOOKKEEPING_MEMO, LOCAL
    from shared.temporal import SEARCH_ATTRIBUTES, to_application_error

T = TypeVar("T")

BOOKKEEPING_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=10),
                                maximum_attempts=0)
BOOKKEEPING_TIMEOUT = timedelta(seconds=30)
LOCAL_BOOKKEEPING = "jobforge.bookkeeping-local"
SET_SEARCH_ATTRIBUTES = "jobforge.admission-search-attributes"
#: runs recorded before it wrote a cancellation that surfaced through a cancelled activity as a failure
CANCELLED_THROUGH_ACTIVITY = "jobforge.cancelled-through-activity"


def _local_bookkeeping() -> bool:
    """Whether the run's bookkeeping steps are local activities: always when its starter said so in the
    memo (:data:`shared.starts.BOOKKEEPING_MEMO`, which no run started before local bookkeeping carries:
    such runs record no patch marker), else on the patched path (a raw start records the marker)."""
    return workflow.memo_value(BOOKKEEPING_MEMO, None) == LOCAL or workflow.patched(LOCAL_BOOKKEEPING)


async def _bookkeeping(method: Callable[..., Awaitable[Any]], arg: Any,
                       start_to_close: timedelta = BOOKKEEPING_TIMEOUT) -> Any:
    """Run a bookkeeping activity: local on current histories, a regular activity on older ones."""
    if _local_bookkeeping():
        return await workflow.execute_local_activity_method(method, arg, start_to_close_timeout=start_to_close,
                                                            retry_policy=BOOKKEEPING_RETRY)
    return await workflow.execute_activity_method(method, arg, start_to_close_timeout=start_to_close,
                                                  retry_policy=BOOKKEEPING_RETRY)


def _attributes() -> dict[str, str]:
    """The run's JobForge search attributes as they stand (name -> value, set ones only)."""
    current = workflow.info().typed_search_attributes
    found = {key.name: current.get(key) for key in SEARCH_ATTRIBUTES}
    return {name: value for name, value in found.items() if isinstance(value, str) and value}


def _set_attributes(wanted: dict[str, str]) -> None:
    """Upsert those of ``wanted`` that differ from the run's (nothing to do: no command)."""
    current = _attributes()
    updates = [key.value_set(wanted[key.name]) for key in SEARCH_ATTRIBUTES
               if wanted.get(key.name) and wanted[key.name] != current.get(key.name)]
    if updates:
        workflow.deprecate_patch(SET_SEARCH_ATTRIBUTES)
        workflow.upsert_search_attributes(updates)


def _decode(raw: RawValue) -> Any:
    """The argument as plain JSON values."""
    try:
        return workflow.payload_converter().from_payload(raw.payload)
    except Exception:  # any payload a converter cannot read is the sender's error, not a reason to retry
        encoding = raw.payload.metadata.get("encoding", b"").decode("utf-8", "replace")[:50]
        raise InvalidRunArgument(
            f"the argument of {workflow.info().workflow_type} cannot be read as JSON (encoding {encoding!r})",
            workflow_type=workflow.info().workflow_type, fields=["(root)"],
            problems=[f"(root): undecodable {encoding} payload"]) from None


async def refuse(err: JobForgeError | None, value: Any = None) -> NoReturn:
    """Record and audit a run refused before admission (``err``; None: an unknown workflow type), then fail
    it with the typed error. ``value`` is the argument as far as it could be read (its tenant, trace, actor)."""
    info = workflow.info()
    attributes = _attributes()
    result: RefusalResult = await workflow.execute_local_activity_method(
        RunActivities.refuse,
        RefusalInput(workflow_type=info.workflow_type, task_queue=info.task_queue, workflow_id=info.workflow_id,
                     run_id=info.run_id, tenant_id=readable_tenant(value, attributes),
                     trace_id=readable_trace(value, attributes), actor=readable_actor(value),
                     error_code=err.code if err else "", reason=err.message if err else "",
                     error_details=err.details if err else {}),
        start_to_close_timeout=BOOKKEEPING_TIMEOUT, retry_policy=BOOKKEEPING_RETRY)
    _set_attributes(result.search_attributes)
    raise ApplicationError(result.reason, result.error_details, type=result.error_code, non_retryable=True)


M = TypeVar("M", bound=BaseModel)


def read_argument(args: Sequence[Any], model: type[M]) -> M:
    """The one argument of a JobForge workflow that is not a template, read in workflow code: a malformed
    one fails the run at once, typed (``invalid_run_argument``), instead of its workflow task forever."""
    try:
        return parse_argument(args, model, workflow.info().workflow_type)
    except InvalidRunArgument as err:
        raise to_application_error(err) from None


async def accept(job: RawValue | JobRun) -> JobRun:
    """The run's argument as a JobRun; a malformed one is refused (:func:`refuse`)."""
    if isinstance(job, JobRun):  # a template still declaring ``job: JobRun`` (decoded by the SDK)
        return job
    value: Any = None
    try:
        value = _decode(job)
        return parse_job_run(value, workflow.info().workflow_type)
    except InvalidRunArgument as err:
        await refuse(err, value)


async def admit(job: JobRun) -> AdmissionResult:
    info = workflow.info()
    result: AdmissionResult = await _bookkeeping(
        RunActivities.admit,
        AdmissionInput(run=job, workflow_id=info.workflow_id, run_id=info.run_id,
                       workflow_type=info.workflow_type, search_attributes=_attributes()))
    _set_attributes(result.search_attributes)
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


async def run_job(argument: RawValue | JobRun, body: Callable[[dict[str, Any]], Awaitable[T]],
                  summarise: Callable[[T], dict[str, Any]],
                  code_path: Callable[[dict[str, Any]], str | None] | None = None) -> T:
    """Decode and admit the run's argument, capture its provenance, run ``body(validated_inputs)``,
    record the outcome.

    ``code_path`` picks the repository the run works on out of its inputs, for the provenance.
    """
    job = await accept(argument)
    admission = await admit(job)
    if not admission.admitted:
        raise ApplicationError(admission.reason, admission.error_details, type=admission.error_code,
                               non_retryable=True)
    try:
        # current histories skip the step when admission found JOBFORGE_REPLAY_PACK_ENABLED off; a
        # provenance step that fails for good fails the run (recorded) instead of leaving it running
        if admission.capture_provenance or not _local_bookkeeping():
            await capture_provenance(job, admission.inputs, code_path(admission.inputs) if code_path else None)
        result = await body(admission.inputs)
    except (asyncio.CancelledError, CancelledError):
        await asyncio.shield(asyncio.ensure_future(finish(job, RunStatus.CANCELLED, error="cancelled")))
        raise
    except (ActivityError, ApplicationError) as exc:
        # a cancelled run can surface as the failure of the activity its cancellation cancelled (asyncio.gather
        # hands on the first child's error): that is the run's cancellation, which the SDK also treats so
        if is_cancelled_exception(exc) and workflow.patched(CANCELLED_THROUGH_ACTIVITY):
            await finish(job, RunStatus.CANCELLED, error="cancelled")
            raise
        code, message = _failure_message(exc)
        await finish(job, RunStatus.FAILED, {"error_type": code}, message)
        raise ApplicationError(message, type=code, non_retryable=True) from exc
    await finish(job, RunStatus.SUCCEEDED, summarise(result))
    return result


class _JobArgumentsInbound(WorkflowInboundInterceptor):
    templates: frozenset[str] = frozenset()

    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        if len(input.args) != 1 and workflow.info().workflow_type in self.templates:
            await refuse(argument_count_error(workflow.info().workflow_type, len(input.args)))
        return await super().execute_workflow(input)


class JobArguments(Interceptor):
    """Worker interceptor: a template run started with no argument or several is refused (typed, recorded)
    instead of failing its workflow task forever on the run method's signature."""

    def __init__(self, templates: frozenset[str]) -> None:
        self.inbound = type("JobArgumentsInbound", (_JobArgumentsInbound,), {"templates": templates})

    def workflow_interceptor_class(
            self, input: WorkflowInterceptorClassInput) -> type[WorkflowInboundInterceptor] | None:
        return self.inbound
