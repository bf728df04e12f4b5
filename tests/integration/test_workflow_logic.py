"""JobForge's workflows on the dev server with their activities replaced by test doubles.

Each double is registered under the real activity's name (``jobforge.admit``, ``triggers.fire``, ...),
so the workflow code runs unchanged against answers the test chooses, without PostgreSQL: the job
frame (admitted, refused, a malformed argument or several, an unknown workflow type, a typed
failure, a retried one, retries used up, cancellation), the trigger fire (decided, unreadable input
with and without a trigger to record it on) and the per-tenant event router (pending and swept
events first, a failed event retried after a back-off while new ones go on). Waits are on the
doubles' recorded calls, never on the clock.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.provenance import CaptureProvenanceInput, CaptureProvenanceResult
from jobforge.models import FireOutcome, JobRun, RunStatus, Verdict
from shared.bookkeeping import AdmissionInput, AdmissionResult, FinishRunInput, RefusalInput, RefusalResult
from shared.events import ROUTE_SIGNAL
from shared.healthcheck import Check, CheckStatus, HealthcheckInputs, HealthcheckReport
from shared.triggers.models import (
    FireRefusal,
    FireRequest,
    RouteBatchInput,
    RouteBatchResult,
    RouteRef,
    RouterInput,
    TriggerFireInput,
    UnroutedInput,
    UnroutedResult,
)
from workers.worker import WORKFLOW_RUNNER
from workflows._job import JobArguments
from workflows.event_router import EventRouterWorkflow
from workflows.healthcheck import HealthcheckWorkflow
from workflows.trigger_fire import TriggerFireWorkflow
from workflows.unknown_type import UnknownWorkflowTypeWorkflow

pytestmark = pytest.mark.integration

HC = "autopilot.jobforge.healthcheck"
WAIT = 30.0  # seconds: a bound on each wait for a double's call, never a pause


class Calls:
    """What the doubles were asked, in order, with a wait on a condition over it."""

    def __init__(self) -> None:
        self.log: list[tuple[str, Any]] = []
        self._changed = asyncio.Condition()

    async def add(self, name: str, value: Any) -> None:
        async with self._changed:
            self.log.append((name, value))
            self._changed.notify_all()

    def of(self, name: str) -> list[Any]:
        return [value for called, value in self.log if called == name]

    async def until(self, predicate: Callable[[], bool]) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(predicate), WAIT)


class FakeRuns:
    """Doubles of the job frame's bookkeeping and of the healthcheck's checks."""

    def __init__(self, calls: Calls, admission: AdmissionResult,
                 database: Callable[[int], Check] | None = None) -> None:
        self.calls = calls
        self.admission = admission
        self.database = database
        self.release = asyncio.Event()  # check_pollers waits for it when asked to hang
        self.hang_pollers = False

    @activity.defn(name="jobforge.admit")
    async def admit(self, req: AdmissionInput) -> AdmissionResult:
        await self.calls.add("admit", req)
        return self.admission

    @activity.defn(name="jobforge.refuse_run")
    async def refuse(self, req: RefusalInput) -> RefusalResult:
        await self.calls.add("refuse", req)
        if not req.error_code:  # an unknown workflow type: the activity names the templates
            return RefusalResult(error_code="unknown_workflow_type", reason=f"no template {req.workflow_type}")
        return RefusalResult(error_code=req.error_code, reason=req.reason, error_details=req.error_details)

    @activity.defn(name="jobforge.capture_provenance")
    async def capture_provenance(self, req: CaptureProvenanceInput) -> CaptureProvenanceResult:
        await self.calls.add("capture_provenance", req)
        return CaptureProvenanceResult(captured=True)

    @activity.defn(name="jobforge.finish_run")
    async def finish_run(self, req: FinishRunInput) -> None:
        await self.calls.add("finish", req)

    @activity.defn(name="healthcheck.check_database")
    async def check_database(self) -> Check:
        attempt = activity.info().attempt
        await self.calls.add("check_database", attempt)
        if self.database is not None:
            return self.database(attempt)
        return Check(name="database", status=CheckStatus.OK, detail="fake")

    @activity.defn(name="healthcheck.check_temporal")
    async def check_temporal(self) -> Check:
        return Check(name="temporal", status=CheckStatus.OK, detail="fake")

    @activity.defn(name="healthcheck.check_pollers")
    async def check_pollers(self, inputs: HealthcheckInputs) -> Check:
        await self.calls.add("check_pollers", inputs)
        if self.hang_pollers:
            await self.release.wait()
        return Check(name="pollers", status=CheckStatus.OK, detail="fake")

    def all(self) -> list[Callable[..., Any]]:
        return [self.admit, self.refuse, self.capture_provenance, self.finish_run, self.check_database,
                self.check_temporal, self.check_pollers]


class FakeTriggers:
    """Doubles of the trigger and routing activities."""

    def __init__(self, calls: Calls, sweeps: Sequence[UnroutedResult] = (),
                 fail_once: frozenset[str] = frozenset()) -> None:
        self.calls = calls
        self.sweeps = list(sweeps)
        self.fail_once = set(fail_once)

    @activity.defn(name="triggers.fire")
    async def fire(self, req: FireRequest) -> FireOutcome:
        await self.calls.add("fire", req)
        return FireOutcome(trigger_name="nightly", verdict=Verdict.FIRE, reasons=[], fire_id=7,
                           run_workflow_id="jobforge/acme/run")

    @activity.defn(name="triggers.fire_refused")
    async def fire_refused(self, req: FireRefusal) -> FireOutcome | None:
        await self.calls.add("fire_refused", req)
        return None

    @activity.defn(name="events.unrouted")
    async def unrouted(self, req: UnroutedInput) -> UnroutedResult:
        await self.calls.add("unrouted", req)
        return self.sweeps.pop(0) if self.sweeps else UnroutedResult(refs=[], more=False)

    @activity.defn(name="events.route_batch")
    async def route_batch(self, req: RouteBatchInput) -> RouteBatchResult:
        keys = [ref.route_key for ref in req.events]
        failed = {key: "store away" for key in keys if key in self.fail_once}
        self.fail_once -= failed.keys()
        await self.calls.add("batch", (keys, sorted(failed)))
        return RouteBatchResult(routed=[key for key in keys if key not in failed], failed=failed)

    def all(self) -> list[Callable[..., Any]]:
        return [self.fire, self.fire_refused, self.unrouted, self.route_batch]


@pytest.fixture
def client(temporal_env: WorkflowEnvironment) -> Client:
    return temporal_env.client


@asynccontextmanager
async def serving(client: Client, workflows: list[type[Any]], activities: list[Callable[..., Any]]
                  ) -> AsyncIterator[str]:
    """A worker on a task queue of the test's own, set up as JobForge's worker runs workflows."""
    queue = f"logic-{uuid.uuid4().hex[:12]}"
    async with Worker(client, task_queue=queue, workflows=workflows, activities=activities,
                      workflow_runner=WORKFLOW_RUNNER, interceptors=[JobArguments(frozenset({HC}))]):
        yield queue


def job(**changes: Any) -> JobRun:
    return JobRun(tenant_id="acme", template_key=HC, trace_id="t-logic", **changes)


def admitted(**changes: Any) -> AdmissionResult:
    return AdmissionResult(**{"admitted": True, "inputs": {"task_queues": []}, "capture_provenance": False, **changes})


def final_record(calls: Calls) -> FinishRunInput:
    """The run's final record. Local activities run at least once: when a run fails while other
    activities' results arrive, the server refuses the failing workflow task and its local activities
    run again in the next one, so the record may be written twice, always the same."""
    finishes = calls.of("finish")
    assert finishes and all(f == finishes[0] for f in finishes), finishes
    return finishes[0]  # type: ignore[no-any-return]


async def failure_of(handle: WorkflowHandle[Any, Any]) -> BaseException:
    with pytest.raises(WorkflowFailureError) as info:
        await handle.result()
    assert info.value.cause is not None
    return info.value.cause


# -- the job frame (workflows/_job.run_job), through the healthcheck template ------------------------


async def test_admitted_run_runs_its_body_and_records_success(client: Client) -> None:
    """Admitted: the body runs on the validated inputs, provenance is captured when admission says so,
    and the run is recorded succeeded with its summary."""
    calls = Calls()
    fakes = FakeRuns(calls, admitted(capture_provenance=True, inputs={"task_queues": ["q1"]}))
    async with serving(client, [HealthcheckWorkflow], fakes.all()) as queue:
        report = await client.execute_workflow(HC, job(), id=f"wf-{uuid.uuid4()}", task_queue=queue,
                                               result_type=HealthcheckReport)
    assert report.healthy and [c.name for c in report.checks] == ["database", "temporal", "pollers"]
    assert [a.run.tenant_id for a in calls.of("admit")] == ["acme"]
    assert calls.of("check_pollers") == [HealthcheckInputs(task_queues=["q1"])]
    assert [c.inputs for c in calls.of("capture_provenance")] == [{"task_queues": ["q1"]}]
    finish = final_record(calls)
    assert finish.status is RunStatus.SUCCEEDED and finish.summary == {"healthy": True}
    names = [name for name, _ in calls.log]
    assert names.index("admit") < names.index("capture_provenance") < names.index("check_pollers") \
        < names.index("finish")


async def test_admission_off_skips_provenance(client: Client) -> None:
    """An admission that says provenance is off (REPLAY_PACK_ENABLED) runs the body without capturing it."""
    calls = Calls()
    async with serving(client, [HealthcheckWorkflow], FakeRuns(calls, admitted()).all()) as queue:
        await client.execute_workflow(HC, job(), id=f"wf-{uuid.uuid4()}", task_queue=queue)
    assert not calls.of("capture_provenance") and final_record(calls).status is RunStatus.SUCCEEDED


async def test_refused_run_fails_typed_without_running_its_body(client: Client) -> None:
    """Refused by admission: the run fails with the refusal's code, reason and details (non-retryable),
    runs none of its body and writes no final record (admission recorded the refusal)."""
    calls = Calls()
    refusal = AdmissionResult(admitted=False, reason="JOBFORGE_AUTOPILOT_JOBS_ENABLED is off",
                              error_code="feature_disabled", error_details={"flag": "JOBFORGE_AUTOPILOT_JOBS_ENABLED"})
    async with serving(client, [HealthcheckWorkflow], FakeRuns(calls, refusal).all()) as queue:
        handle = await client.start_workflow(HC, job(), id=f"wf-{uuid.uuid4()}", task_queue=queue)
        cause = await failure_of(handle)
    assert isinstance(cause, ApplicationError) and cause.type == "feature_disabled" and cause.non_retryable
    assert cause.message == "JOBFORGE_AUTOPILOT_JOBS_ENABLED is off"
    assert cause.details == ({"flag": "JOBFORGE_AUTOPILOT_JOBS_ENABLED"},)
    assert {name for name, _ in calls.log} == {"admit"}


async def test_malformed_argument_is_refused_before_admission(client: Client) -> None:
    """An argument that is not a run request fails with invalid_run_argument naming the fields, recorded
    through the refusal step with the tenant it could read; admission never runs."""
    calls = Calls()
    async with serving(client, [HealthcheckWorkflow], FakeRuns(calls, admitted()).all()) as queue:
        handle = await client.start_workflow(HC, {"tenant_id": "acme", "inputs": []}, id=f"wf-{uuid.uuid4()}",
                                             task_queue=queue)
        cause = await failure_of(handle)
    assert isinstance(cause, ApplicationError) and cause.type == "invalid_run_argument" and cause.non_retryable
    [refusal] = calls.of("refuse")
    assert refusal.tenant_id == "acme" and refusal.error_code == "invalid_run_argument"
    assert "inputs" in refusal.error_details["fields"]
    assert not calls.of("admit") and not calls.of("finish")


async def test_several_arguments_are_refused_before_admission(client: Client) -> None:
    """A template run started with two arguments is refused by the worker's interceptor (typed, recorded)
    instead of failing its workflow task on the run method's signature."""
    calls = Calls()
    async with serving(client, [HealthcheckWorkflow], FakeRuns(calls, admitted()).all()) as queue:
        handle = await client.start_workflow(HC, args=[job(), job()], id=f"wf-{uuid.uuid4()}", task_queue=queue)
        cause = await failure_of(handle)
    assert isinstance(cause, ApplicationError) and cause.type == "invalid_run_argument"
    assert [r.error_code for r in calls.of("refuse")] == ["invalid_run_argument"] and not calls.of("admit")


async def test_unknown_workflow_type_is_answered_at_once(client: Client) -> None:
    """A workflow type no worker registers is answered on the queue by the catch-all: refused under the
    tenant its argument names, failing with unknown_workflow_type instead of waiting for ever."""
    calls = Calls()
    workflows = [HealthcheckWorkflow, UnknownWorkflowTypeWorkflow]
    async with serving(client, workflows, FakeRuns(calls, admitted()).all()) as queue:
        handle = await client.start_workflow("autopilot.jobforge.nothing", job(), id=f"wf-{uuid.uuid4()}",
                                             task_queue=queue)
        cause = await failure_of(handle)
    assert isinstance(cause, ApplicationError) and cause.type == "unknown_workflow_type" and cause.non_retryable
    [refusal] = calls.of("refuse")
    assert (refusal.workflow_type, refusal.tenant_id, refusal.error_code) == ("autopilot.jobforge.nothing", "acme", "")
    assert not calls.of("admit")


async def test_typed_activity_failure_fails_the_run_at_once(client: Client) -> None:
    """A non-retryable typed failure of a body activity is tried once; the run fails with that type and
    message, recorded failed with the type in its summary."""
    calls = Calls()

    def down(attempt: int) -> Check:
        raise ApplicationError("the database is read-only", type="store_unavailable", non_retryable=True)

    async with serving(client, [HealthcheckWorkflow], FakeRuns(calls, admitted(), down).all()) as queue:
        handle = await client.start_workflow(HC, job(), id=f"wf-{uuid.uuid4()}", task_queue=queue)
        cause = await failure_of(handle)
    assert isinstance(cause, ApplicationError) and cause.type == "store_unavailable" and cause.non_retryable
    assert calls.of("check_database") == [1]
    finish = final_record(calls)
    assert finish.status is RunStatus.FAILED and finish.summary == {"error_type": "store_unavailable"}
    assert finish.error == "the database is read-only"


async def test_retryable_activity_failure_is_retried_then_succeeds(client: Client) -> None:
    """An untyped failure is retried by the activity's policy; a later attempt's success is the run's."""
    calls = Calls()

    def flaky(attempt: int) -> Check:
        if attempt == 1:
            raise RuntimeError("connection reset")
        return Check(name="database", status=CheckStatus.OK, detail="second try")

    async with serving(client, [HealthcheckWorkflow], FakeRuns(calls, admitted(), flaky).all()) as queue:
        report = await client.execute_workflow(HC, job(), id=f"wf-{uuid.uuid4()}", task_queue=queue,
                                               result_type=HealthcheckReport)
    assert report.healthy and report.checks[0].detail == "second try"
    assert calls.of("check_database") == [1, 2]
    assert final_record(calls).status is RunStatus.SUCCEEDED


async def test_retries_used_up_fail_the_run_with_the_last_error(client: Client) -> None:
    """An activity that keeps failing uses up its attempts (3 for the checks); the run then fails,
    non-retryable, typed by the exception's class, and is recorded failed."""
    calls = Calls()

    def broken(attempt: int) -> Check:
        raise RuntimeError(f"connection reset ({attempt})")

    async with serving(client, [HealthcheckWorkflow], FakeRuns(calls, admitted(), broken).all()) as queue:
        handle = await client.start_workflow(HC, job(), id=f"wf-{uuid.uuid4()}", task_queue=queue)
        cause = await failure_of(handle)
    assert isinstance(cause, ApplicationError) and cause.type == "RuntimeError" and cause.non_retryable
    assert calls.of("check_database") == [1, 2, 3]
    finish = final_record(calls)
    assert finish.status is RunStatus.FAILED and finish.error == "connection reset (3)"


async def test_cancelled_run_is_recorded_cancelled(client: Client) -> None:
    """Cancelling a run mid-body records it cancelled (the final record is written despite the
    cancellation) and the run ends cancelled."""
    calls = Calls()
    fakes = FakeRuns(calls, admitted())
    fakes.hang_pollers = True
    try:
        async with serving(client, [HealthcheckWorkflow], fakes.all()) as queue:
            handle = await client.start_workflow(HC, job(), id=f"wf-{uuid.uuid4()}", task_queue=queue)
            await calls.until(lambda: bool(calls.of("check_pollers")))
            await handle.cancel()
            cause = await failure_of(handle)
    finally:
        fakes.release.set()
    assert isinstance(cause, CancelledError)
    finish = final_record(calls)
    assert finish.status is RunStatus.CANCELLED and finish.error == "cancelled"


# -- jobforge.trigger.fire ----------------------------------------------------------------------------


async def test_trigger_fire_decides_with_its_own_fire_key(client: Client) -> None:
    """A fire with a valid input is decided once, keyed by its workflow id and run id, in the context it
    names; the decision is the workflow's result."""
    calls = Calls()
    wid = f"jobforge/acme/trigger/nightly/fire-{uuid.uuid4().hex[:8]}"
    async with serving(client, [TriggerFireWorkflow], FakeTriggers(calls).all()) as queue:
        handle = await client.start_workflow(
            "jobforge.trigger.fire", TriggerFireInput(tenant_id="acme", trigger_id="tr-1", trigger_name="nightly",
                                                      source="manual", actor="alice"),
            id=wid, task_queue=queue, result_type=FireOutcome)
        outcome = await handle.result()
    assert outcome.verdict is Verdict.FIRE and outcome.fire_id == 7
    [request] = calls.of("fire")
    assert request.trigger_id == "tr-1" and request.fire_key == f"{wid}#{handle.result_run_id}"
    assert (request.context.source, request.context.actor) == ("manual", "alice")
    assert not calls.of("fire_refused")


@pytest.mark.parametrize(("workflow_id", "recorded"), [
    ("jobforge/acme/trigger/nightly/fire-2026-12-03T07:00:00Z", True),
    ("someone-elses-workflow", False),
])
async def test_trigger_fire_with_unreadable_input_fails_at_once(client: Client, workflow_id: str,
                                                                recorded: bool) -> None:
    """A fire whose input is not a TriggerFireInput fails with trigger_input_invalid, deciding nothing;
    it is recorded as a skipped fire when its workflow id names a trigger, with the repair command."""
    calls = Calls()
    async with serving(client, [TriggerFireWorkflow], FakeTriggers(calls).all()) as queue:
        handle = await client.start_workflow("jobforge.trigger.fire", {"tenant_id": "acme"},
                                             id=f"{workflow_id}-{uuid.uuid4().hex[:6]}", task_queue=queue)
        cause = await failure_of(handle)
    assert isinstance(cause, ApplicationError) and cause.type == "trigger_input_invalid" and cause.non_retryable
    assert not calls.of("fire")
    refusals = calls.of("fire_refused")
    assert len(refusals) == int(recorded)
    if recorded:
        assert (refusals[0].tenant_id, refusals[0].trigger_name) == ("acme", "nightly")
        assert "nightly --tenant acme" in refusals[0].reason


# -- jobforge.event.router -------------------------------------------------------------------------------


def ref(key: str) -> RouteRef:
    return RouteRef(route_key=key, actor="alice")


def routed(calls: Calls) -> list[str]:
    return [key for keys, failed in calls.of("batch") for key in keys if key not in failed]


async def test_router_routes_pending_then_swept_then_signalled_events(client: Client) -> None:
    """A router run routes what its previous run handed over first, then the stored events its sweep
    finds (sweeping again while a sweep was cut at its limit), then the events it is signalled."""
    calls = Calls()
    fakes = FakeTriggers(calls, sweeps=[UnroutedResult(refs=[ref("s1")], more=True),
                                        UnroutedResult(refs=[ref("s2")], more=False)])
    async with serving(client, [EventRouterWorkflow], fakes.all()) as queue:
        handle = await client.start_workflow(EventRouterWorkflow.run,
                                             RouterInput(tenant_id="acme", pending=[ref("p1")]),
                                             id=f"router-{uuid.uuid4()}", task_queue=queue)
        try:
            await calls.until(lambda: "s2" in routed(calls))
            assert [keys for keys, _ in calls.of("batch")] == [["p1", "s1"], ["s2"]]
            assert len(calls.of("unrouted")) == 2
            for key in ("e1", "e2"):
                await handle.signal(ROUTE_SIGNAL, ref(key))
            await calls.until(lambda: {"e1", "e2"} <= set(routed(calls)))
        finally:
            await handle.terminate()
    assert sorted(routed(calls)) == ["e1", "e2", "p1", "s1", "s2"]  # each once
    assert len(calls.of("unrouted")) == 2  # no sweep while the last one was complete


async def test_router_retries_a_failed_event_after_a_backoff(client: Client) -> None:
    """An event whose routing failed is routed again after a back-off (a timer), while an event signalled
    meanwhile is routed without waiting for it."""
    calls = Calls()
    fakes = FakeTriggers(calls, fail_once=frozenset({"bad"}))
    async with serving(client, [EventRouterWorkflow], fakes.all()) as queue:
        handle = await client.start_workflow(EventRouterWorkflow.run, RouterInput(tenant_id="acme"),
                                             id=f"router-{uuid.uuid4()}", task_queue=queue)
        try:
            await handle.signal(ROUTE_SIGNAL, ref("bad"))
            await calls.until(lambda: any(failed for _, failed in calls.of("batch")))
            await handle.signal(ROUTE_SIGNAL, ref("next"))
            await calls.until(lambda: {"bad", "next"} <= set(routed(calls)))
            history = await handle.fetch_history()
        finally:
            await handle.terminate()
    batches = calls.of("batch")
    assert batches[0] == (["bad"], ["bad"])
    assert [keys for keys, _ in batches].count(["bad"]) == 2 and routed(calls).count("bad") == 1
    assert any(event.HasField("timer_started_event_attributes") for event in history.events)
