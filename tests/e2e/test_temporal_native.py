"""Temporal-native use as a user drives it: the stock `temporal` CLI and a raw `temporalio.client.Client`
against a real `jobforge-worker` process.

Whatever is sent through Temporal to a JobForge task queue is answered within seconds: a malformed
argument or an unknown workflow type fails with a typed, readable failure, recorded and audited as a
rejected run of its tenant; admission is the authority on the run's search attributes.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from temporalio.client import Client, WorkflowFailureError
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ApplicationError

from jobforge.client import JobForgeClient
from jobforge.models import EventEnvelope, RunRecord, RunStatus, TriggerKind, TriggerSpec
from shared.settings import Settings
from shared.store.audit import AuditRecord
from shared.temporal import TENANT
from shared.triggers.schedules import schedule_id
from shared.triggers.service import TriggerService
from tests.support.procs import BIN, env_with, jobforge, start_worker, wait_for
from workers.api import create_app
from workers.runtime import open_runtime

pytestmark = pytest.mark.e2e

HEALTHCHECK = "autopilot.jobforge.healthcheck"
TEMPORAL = BIN / "temporal"
#: how long a refused run may take to be answered (it takes well under a second here)
ANSWERED_WITHIN = 15.0
FLAGS = {"JOBFORGE_AUTOPILOT_JOBS_ENABLED": "1", "JOBFORGE_AUDIT_LOGGING_ENABLED": "1",
         "JOBFORGE_TRIGGERS_ENABLED": "1", "JOBFORGE_EVENTS_ENABLED": "1"}


@pytest.fixture(scope="module")
def worker_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("native") / "worker.log"


@pytest.fixture(scope="module")
def native(pg_url: str, temporal_env: Any, worker_log: Path) -> Iterator[Settings]:
    """A `jobforge-worker` process serving a task queue of this module's own, flags on."""
    from shared.settings import Secret

    address = str(temporal_env.client.service_client.config.target_host)
    settings = Settings(home=worker_log.parent / "home", temporal_address=address, database_url=Secret(pg_url),
                        task_queue=f"native-{uuid.uuid4().hex[:10]}")
    proc = start_worker(settings, worker_log, FLAGS)
    try:
        wait_for(lambda: "worker_started" in worker_log.read_text(errors="replace") or proc.poll() is not None,
                 60, "the worker to start")
        assert proc.poll() is None, worker_log.read_text()
        yield settings
    finally:
        proc.terminate()
        proc.wait(20)


def temporal(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """The stock `temporal` CLI, as a user runs it (TEMPORAL_ADDRESS in the environment)."""
    return subprocess.run([str(TEMPORAL), *args], env=env_with({"TEMPORAL_ADDRESS": settings.temporal_address}),
                          capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL)


def count(settings: Settings, query: str) -> int:
    done = temporal(settings, "workflow", "count", "--query", query, "-o", "json")
    assert done.returncode == 0, done.stderr
    return int(json.loads(done.stdout).get("count", 0))  # zero is left out of the JSON


async def failure_of(settings: Settings, workflow_type: str, *args: Any,
                     search_attributes: TypedSearchAttributes | None = None) -> tuple[ApplicationError, str]:
    """Start ``workflow_type`` with a raw client (the default converter) and wait for its failure."""
    client = await Client.connect(settings.temporal_address)
    workflow_id = f"raw-{uuid.uuid4().hex}"
    handle = await client.start_workflow(workflow_type, args=list(args), id=workflow_id, task_queue=settings.task_queue,
                                         search_attributes=search_attributes or TypedSearchAttributes.empty)
    with pytest.raises(WorkflowFailureError) as info:
        await asyncio.wait_for(handle.result(), ANSWERED_WITHIN)
    cause = info.value.cause
    assert isinstance(cause, ApplicationError), cause
    return cause, workflow_id


async def stored_run(settings: Settings, tenant: str, workflow_id: str) -> RunRecord:
    async with open_runtime(settings, temporal=False) as rt:
        return await rt.store.get_run(workflow_id, tenant)


async def make_tenant(settings: Settings, tenant: str) -> str:
    """A tenant that exists, as an operator creates it (`jobforge tenants create`)."""
    async with open_runtime(settings, temporal=False) as rt:
        await rt.gate.tenants.create_tenant(tenant)
    return tenant


async def audit_entries(settings: Settings, tenant: str) -> list[AuditRecord]:
    async with open_runtime(settings, temporal=False) as rt:
        return list(await rt.store.audit.list(tenant))


async def test_raw_start_with_an_empty_argument_fails_naming_the_field(native: Settings) -> None:
    """`start_workflow(HEALTHCHECK, {})` fails within seconds, non-retryable, typed invalid_run_argument, naming
    tenant_id (no tenant can be read: nothing is recorded)."""
    failure, _ = await failure_of(native, HEALTHCHECK, {})
    assert failure.type == "invalid_run_argument" and failure.non_retryable
    assert "tenant_id: Field required" in failure.message
    assert failure.details[0]["fields"] == ["tenant_id"]


async def test_malformed_argument_is_a_rejected_run_of_its_tenant(native: Settings) -> None:
    """A malformed argument whose tenant can be read is a rejected run of that tenant: run record, audit deny,
    and counted under its JobForgeTenant filter by the stock CLI."""
    tenant = f"raw-{uuid.uuid4().hex[:8]}"
    failure, workflow_id = await failure_of(native, HEALTHCHECK, {"tenant_id": tenant, "inputs": [1, 2]})
    assert failure.type == "invalid_run_argument" and failure.details[0]["fields"] == ["inputs"]
    run = await stored_run(native, tenant, workflow_id)
    assert run.status is RunStatus.REJECTED and "inputs" in run.error
    entries = await audit_entries(native, tenant)
    assert [(e.decision, e.action, e.details.get("error_code")) for e in entries] == [
        ("deny", "jobs.request", "invalid_run_argument")]
    wait_for(lambda: count(native, f'JobForgeTenant="{tenant}"') == 1, 10, "the rejected run under its tenant")


async def test_unreadable_argument_is_recorded_under_its_tenant_attribute(native: Settings) -> None:
    """An argument that names no tenant (a bare string) started with JobForgeTenant is a rejected run of that
    tenant: recorded, audited, and still under its filter."""
    tenant = f"attr-{uuid.uuid4().hex[:8]}"
    failure, workflow_id = await failure_of(native, HEALTHCHECK, "run it please",
                                            search_attributes=TypedSearchAttributes([SearchAttributePair(TENANT,
                                                                                                         tenant)]))
    assert failure.type == "invalid_run_argument" and "is a JSON string, not an object" in failure.message
    assert (await stored_run(native, tenant, workflow_id)).status is RunStatus.REJECTED
    assert [e.decision for e in await audit_entries(native, tenant)] == ["deny"]


async def test_no_argument_and_two_arguments_fail_typed(native: Settings) -> None:
    """A start with no argument, or two, fails typed instead of failing its workflow task forever."""
    none, _ = await failure_of(native, HEALTHCHECK)
    two, _ = await failure_of(native, HEALTHCHECK, {"tenant_id": "acme"}, {"more": 1})
    assert (none.type, two.type) == ("invalid_run_argument", "invalid_run_argument")
    assert "no argument" in none.message and "2 arguments" in two.message


def test_stock_cli_start_with_a_malformed_input_fails(native: Settings) -> None:
    """`temporal workflow execute` with a string for the argument ends failed, the failure readable in its output."""
    tenant = f"cli-{uuid.uuid4().hex[:8]}"
    done = temporal(native, "workflow", "execute", "--task-queue", native.task_queue, "--type", HEALTHCHECK,
                    "--workflow-id", f"cli-{uuid.uuid4().hex}", "--input", json.dumps({"tenant_id": tenant,
                                                                                      "actor": 7}))
    assert done.returncode != 0
    out = done.stdout + done.stderr
    assert "is not a valid JobRun: actor: Input should be a valid string" in out, out
    wait_for(lambda: count(native, f'JobForgeTenant="{tenant}" AND ExecutionStatus="Failed"') == 1, 10,
             "the failed run under its tenant")


def test_unknown_workflow_type_is_answered_naming_the_templates(native: Settings) -> None:
    """A workflow type no worker knows, sent to a JobForge task queue, fails at once naming the templates, and is
    a rejected run of the tenant its argument names."""
    tenant = f"typo-{uuid.uuid4().hex[:8]}"
    workflow_id = f"typo-{uuid.uuid4().hex}"
    done = temporal(native, "workflow", "execute", "--task-queue", native.task_queue, "--type",
                    "autopilot.jobforge.healthchek", "--workflow-id", workflow_id,
                    "--input", json.dumps({"tenant_id": tenant}))
    out = done.stdout + done.stderr
    assert (done.returncode != 0 and "unknown_workflow_type" in out) or "no JobForge template" in out, out
    assert HEALTHCHECK in out
    run = asyncio.run(stored_run(native, tenant, workflow_id))
    assert run.status is RunStatus.REJECTED and run.template_key == "autopilot.jobforge.healthchek"
    wait_for(lambda: count(native, f'JobForgeTenant="{tenant}"') == 1, 10, "the rejected run under its tenant")


async def test_attributes_contradicting_the_argument_are_refused_and_corrected(native: Settings) -> None:
    """A start whose JobForgeTenant says one tenant while its argument says another is refused (typed, audited
    under the argument's tenant) and ends listed under the argument's tenant, not the attribute's."""
    says, really = f"acme-{uuid.uuid4().hex[:6]}", await make_tenant(native, f"globex-{uuid.uuid4().hex[:6]}")
    attributes = TypedSearchAttributes([SearchAttributePair(TENANT, says)])
    failure, workflow_id = await failure_of(native, HEALTHCHECK, {"tenant_id": really},
                                            search_attributes=attributes)
    assert failure.type == "search_attribute_mismatch" and failure.details[0]["attribute"] == "JobForgeTenant"
    assert (await stored_run(native, really, workflow_id)).status is RunStatus.REJECTED
    assert [e.details.get("error_code") for e in await audit_entries(native, really)] == ["search_attribute_mismatch"]
    wait_for(lambda: count(native, f'JobForgeTenant="{really}" AND WorkflowId="{workflow_id}"') == 1, 10,
             "the refused run under its argument's tenant")
    assert count(native, f'JobForgeTenant="{says}"') == 0


def test_raw_cli_start_without_attributes_gets_them_from_admission(native: Settings) -> None:
    """`temporal workflow execute` with a bare JobRun (no search attributes, no trace id) succeeds and the run ends
    with JobForgeTenant, JobForgeTemplate and a JobForgeTrace set by admission."""
    tenant = asyncio.run(make_tenant(native, f"bare-{uuid.uuid4().hex[:8]}"))
    workflow_id = f"bare-{uuid.uuid4().hex}"
    done = temporal(native, "workflow", "execute", "--task-queue", native.task_queue, "--type", HEALTHCHECK,
                    "--workflow-id", workflow_id, "--input", json.dumps({"tenant_id": tenant, "inputs": {}}))
    assert done.returncode == 0, done.stdout + done.stderr
    query = f'JobForgeTenant="{tenant}" AND JobForgeTemplate="{HEALTHCHECK}" AND WorkflowId="{workflow_id}"'
    wait_for(lambda: count(native, query) == 1, 10, "the admitted run under its tenant filter")
    run = asyncio.run(stored_run(native, tenant, workflow_id))
    assert run.status is RunStatus.SUCCEEDED and run.trace_id
    wait_for(lambda: count(native, f'JobForgeTrace="{run.trace_id}"') == 1, 10, "the run under its trace")


@pytest.mark.parametrize("workflow_type", ["jobforge.event.router", "jobforge.event.route"])
async def test_jobforge_own_workflows_refuse_a_malformed_argument(native: Settings, workflow_type: str) -> None:
    """JobForge's own workflows (the event router, the legacy route workflow) started raw with a wrong argument
    fail typed at once, naming the model and the field, instead of failing their workflow task forever."""
    failure, _ = await failure_of(native, workflow_type, {"tenant": "acme"})
    assert failure.type == "invalid_run_argument" and failure.non_retryable
    model = {"jobforge.event.router": "RouterInput: tenant_id", "jobforge.event.route": "RouteEventInput: event"}
    assert f"is not a valid {model[workflow_type]}: Field required" in failure.message
    none, _ = await failure_of(native, workflow_type)
    assert "no argument" in none.message


def test_templates_json_describes_what_a_raw_start_takes(native: Settings) -> None:
    """`jobforge templates --json` names each template's workflow type and task queue with the JSON Schema of its
    argument: an argument valid under that schema, started with the stock CLI there, is admitted and succeeds;
    one the schema refuses fails typed naming the same field."""
    done = jobforge("templates", "--json", env=cli_env(native))
    assert done.returncode == 0, done.stderr
    health = next(t for t in json.loads(done.stdout) if t["key"] == HEALTHCHECK)
    assert (health["workflow_type"], health["task_queue"]) == (HEALTHCHECK, native.task_queue)
    tenant = asyncio.run(make_tenant(native, f"schema-{uuid.uuid4().hex[:8]}"))
    good, bad = {"tenant_id": tenant, "inputs": {}}, {"tenant_id": tenant, "inputs": {"task_queue": "x"}}
    jsonschema.validate(good, health["job_run"])
    with pytest.raises(jsonschema.ValidationError, match="task_queue"):
        jsonschema.validate(bad, health["job_run"])
    for argument, ok in ((good, True), (bad, False)):
        run = temporal(native, "workflow", "execute", "--task-queue", health["task_queue"], "--type",
                       health["workflow_type"], "--workflow-id", f"schema-{uuid.uuid4().hex}",
                       "--input", json.dumps(argument))
        assert (run.returncode == 0) is ok, run.stdout + run.stderr
    assert f"inputs for {HEALTHCHECK} are invalid: task_queue: Extra inputs are not permitted" in run.stdout


_SCALAR = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
_JSON = st.recursive(_SCALAR, lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=6)
#: arguments that are not a JobRun: not an object, or an object with a wrong or unknown field
MALFORMED = (_JSON.filter(lambda v: not isinstance(v, dict))
             | st.fixed_dictionaries({"tenant_id": st.sampled_from(["acme", "", "BAD ID", 3])},
                                     optional={"inputs": _JSON.filter(lambda v: not isinstance(v, dict)),
                                               "actor": st.integers() | st.none(),
                                               "extra": _JSON}).filter(
                 lambda v: not (isinstance(v["tenant_id"], str)) or "inputs" in v or "actor" in v or "extra" in v))


@hsettings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(argument=MALFORMED)
def test_every_malformed_argument_fails_typed(native: Settings, argument: Any) -> None:
    """Hostile argument shapes (scalars, arrays, objects with wrong or unknown fields) all fail typed, fast."""
    failure, _ = asyncio.run(failure_of(native, HEALTHCHECK, argument))
    assert failure.type in {"invalid_run_argument", "invalid_request"}, failure
    assert failure.non_retryable


def cli_env(settings: Settings) -> dict[str, str]:
    """`jobforge` pointed at the module's services, as an operator's shell would be."""
    return env_with({"JOBFORGE_TEMPORAL_ADDRESS": settings.temporal_address,
                     "JOBFORGE_DATABASE_URL": settings.database_url_value() or "",
                     "JOBFORGE_TASK_QUEUE": settings.task_queue, "JOBFORGE_HOME": str(settings.home), **FLAGS})


def executions(settings: Settings, query: str) -> list[dict[str, Any]]:
    done = temporal(settings, "workflow", "list", "--query", query, "-o", "json", "--limit", "100")
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout or "[]"))


async def test_every_jobforge_start_path_is_under_its_tenant_filter(native: Settings,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs started by the CLI, the SDK over Temporal and over HTTP, `jobforge triggers fire`, a cron trigger's
    Schedule (fired with the stock `temporal schedule trigger`) and an event router all carry JobForgeTenant from
    their first event: `temporal workflow count` under the tenant filter counts every one of them."""
    for name, value in FLAGS.items():
        monkeypatch.setenv(name, value)
    tenant = f"paths-{uuid.uuid4().hex[:8]}"
    async with open_runtime(native) as rt:
        assert rt.temporal is not None
        await rt.gate.tenants.create_tenant(tenant)
        key = await rt.gate.tenants.create_key(tenant, ["*:*"])
        triggers = TriggerService(rt.store.triggers, rt.temporal, rt.settings, rt.registry, rt.flags)
        await triggers.create(TriggerSpec(tenant_id=tenant, name="nightly", kind=TriggerKind.CRON,
                                          template_key=HEALTHCHECK, cron="0 3 1 1 *"))
        await triggers.create(TriggerSpec(tenant_id=tenant, name="on-ping", kind=TriggerKind.EVENT,
                                          template_key=HEALTHCHECK, event_pattern="demo.ping"))
        # 1. the CLI
        done = await asyncio.to_thread(jobforge, "jobs", "request", HEALTHCHECK, "--tenant", tenant, "--json",
                                       env=cli_env(native))
        assert done.returncode == 0, done.stderr
        # 2. the SDK over Temporal, 3. the SDK over HTTP (the API's handlers in this process)
        await rt.client().request_job(tenant, HEALTHCHECK)
        app = create_app(native, rt)
        async with JobForgeClient("http://api", key.secret, transport=httpx.ASGITransport(app=app)) as http:
            await http.request_job(tenant, HEALTHCHECK)
        # 4. `jobforge triggers fire` (a fire workflow and the run it starts)
        done = await asyncio.to_thread(jobforge, "triggers", "fire", "nightly", "--tenant", tenant,
                                       env=cli_env(native))
        assert done.returncode == 0, done.stdout + done.stderr
        # 5. the cron trigger's Schedule, fired with the stock CLI
        done = temporal(native, "schedule", "trigger", "--schedule-id", schedule_id(tenant, "nightly"))
        assert done.returncode == 0, done.stderr
        # 6. an event: its tenant's router and the run its trigger starts
        await rt.client().submit_event(EventEnvelope(tenant_id=tenant, event_id="p-1", event_type="demo.ping"))

        everything = f'WorkflowId STARTS_WITH "jobforge/{tenant}/"'
        expected = {"cli/sdk/http runs": 3, "fire workflows": 2, "fired runs": 3, "router": 1}
        wait_for(lambda: len(executions(native, everything)) >= sum(expected.values()), 30,
                 "every start to be visible")
        found = executions(native, everything)
        types = sorted(e["type"]["name"] for e in found)
        assert types.count(HEALTHCHECK) == 6 and types.count("jobforge.trigger.fire") == 2, types
        assert types.count("jobforge.event.router") == 1, types
        wait_for(lambda: count(native, f'JobForgeTenant="{tenant}"') == len(found), 10, "all under the tenant")
        # from the first event on: the start event itself carries the tenant
        for execution in found:
            handle = rt.temporal.get_workflow_handle(execution["execution"]["workflowId"],
                                                     run_id=execution["execution"]["runId"])
            started = (await handle.fetch_history()).events[0].workflow_execution_started_event_attributes
            assert "JobForgeTenant" in started.search_attributes.indexed_fields, execution["execution"]


KNOWN_TYPES = {HEALTHCHECK, "autopilot.readylayer.verify_pack", "autopilot.keys.rotation", "jobforge.trigger.fire",
               "jobforge.event.router", "jobforge.event.route"}


@hsettings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(workflow_type=st.from_regex(r"[A-Za-z][A-Za-z0-9_.:-]{0,40}", fullmatch=True).filter(
    lambda t: t not in KNOWN_TYPES), argument=_JSON)
def test_every_unknown_workflow_type_is_answered(native: Settings, workflow_type: str, argument: Any) -> None:
    """Any workflow type no worker knows, with any argument, is answered at once on a JobForge task queue:
    unknown_workflow_type naming the templates."""
    failure, _ = asyncio.run(failure_of(native, workflow_type, argument))
    assert failure.type == "unknown_workflow_type" and failure.non_retryable
    assert HEALTHCHECK in failure.details[0]["known_templates"]
