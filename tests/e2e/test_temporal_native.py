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

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from temporalio.client import Client, WorkflowFailureError
from temporalio.common import TypedSearchAttributes
from temporalio.exceptions import ApplicationError

from shared.models import RunRecord, RunStatus
from shared.settings import Settings
from shared.store.audit import AuditLog, AuditRecord
from tests.support.procs import BIN, env_with, start_worker, wait_for
from workers.runtime import open_runtime

pytestmark = pytest.mark.e2e

HEALTHCHECK = "autopilot.jobforge.healthcheck"
TEMPORAL = BIN / "temporal"
#: how long a refused run may take to be answered (it takes well under a second here)
ANSWERED_WITHIN = 15.0
FLAGS = {"JOBFORGE_AUTOPILOT_JOBS_ENABLED": "1", "JOBFORGE_AUDIT_LOGGING_ENABLED": "1"}


@pytest.fixture(scope="module")
def worker_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("native") / "worker.log"


@pytest.fixture(scope="module")
def native(pg_url: str, temporal_env: Any, worker_log: Path) -> Iterator[Settings]:
    """A `jobforge-worker` process serving a task queue of this module's own, flags on."""
    from pydantic import SecretStr

    address = str(temporal_env.client.service_client.config.target_host)
    settings = Settings(home=worker_log.parent / "home", temporal_address=address, database_url=SecretStr(pg_url),
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
    return int(json.loads(done.stdout)["count"])


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


async def audit_entries(settings: Settings, tenant: str) -> list[AuditRecord]:
    async with open_runtime(settings, temporal=False) as rt:
        return list(await AuditLog(rt.store.engine).list(tenant))


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
    assert count(native, f'JobForgeTenant="{tenant}"') == 1


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
    assert count(native, f'JobForgeTenant="{tenant}" AND ExecutionStatus="Failed"') == 1


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
    assert count(native, f'JobForgeTenant="{tenant}"') == 1


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
