"""Record histories of JobForge's own workflows from real runs of the checkout this file is copied into.

The files in this directory were made so: copy this file into the ``tests/integration`` directory of an
older checkout (``git archive <commit> | tar -x -C DIR``) and run it there with this repository's venv::

    HISTORY_OUT=/tmp/out HISTORY_WHAT=refused,healthcheck,route HISTORY_PREFIX=<commit>_ \\
        .venv/bin/python -m pytest -p no:randomly tests/integration/record.py

``route`` works only on code older than the per-tenant router, ``invalid`` only on code that refuses
malformed arguments. The checkout's own fixtures start a dev server and a throwaway database; each run's
history (``fetch_history().to_json()``) is written as ``HISTORY_OUT/<prefix><what>.json``. Check it in
compact (``json.dumps(history, separators=(",", ":"))``) and add it to ``tests/unit/test_recorded_histories.py``.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from temporalio.client import WorkflowFailureError

from jobforge.models import EventEnvelope, JobRun, TriggerKind, TriggerSpec
from shared.flags import Flag
from shared.triggers.service import TriggerService
from workers.runtime import Runtime

HC = "autopilot.jobforge.healthcheck"


async def save(rt: Runtime, name: str, workflow_id: str) -> None:
    """Wait for the run to close (a refused one fails: its history is the point) and write its history."""
    assert rt.temporal is not None
    handle = rt.temporal.get_workflow_handle(workflow_id)
    with contextlib.suppress(WorkflowFailureError):
        await handle.result()
    text = (await handle.fetch_history()).to_json()
    out = Path(os.environ["HISTORY_OUT"])
    out.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 -- a one-off recording, nothing else runs
    (out / f"{os.environ['HISTORY_PREFIX']}{name}.json").write_text(text)


async def test_record(runtime: Runtime, worker: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run what HISTORY_WHAT names on this checkout's workflows and write each run's history."""
    rt = runtime
    assert rt.temporal is not None
    tenant, queue = "acme", rt.settings.task_queue
    what = os.environ["HISTORY_WHAT"].split(",")
    if "refused" in what:  # every flag off: admission refuses a raw start
        wid = f"jobforge/{tenant}/{HC}/refused-{uuid.uuid4().hex[:8]}"
        await rt.temporal.start_workflow(HC, JobRun(tenant_id=tenant, template_key=HC, trace_id="t-refused",
                                                    inputs={"task_queues": [queue]}), id=wid, task_queue=queue)
        await save(rt, "healthcheck_refused", wid)
    if "invalid" in what:  # an argument that is not a JobRun: refused before admission
        wid = f"jobforge/{tenant}/{HC}/invalid-{uuid.uuid4().hex[:8]}"
        await rt.temporal.start_workflow(HC, {"tenant_id": tenant, "inputs": []}, id=wid, task_queue=queue)
        await save(rt, "healthcheck_invalid_argument", wid)
    for flag in (Flag.EVENTS, Flag.TRIGGERS, Flag.AUTOPILOT_JOBS, Flag.AUDIT_LOGGING, Flag.REPLAY_PACK):
        monkeypatch.setenv(flag.value, "1")
    if "healthcheck" in what:
        handle = await rt.client().request_job(tenant, HC, {"task_queues": [queue]})
        await save(rt, "healthcheck", handle.workflow_id)
    if "route" in what:  # one routing workflow per event (code before the per-tenant router)
        route_workflow_id = importlib.import_module("shared.events").route_workflow_id
        svc = TriggerService(rt.store.triggers, rt.temporal, rt.settings, rt.registry, rt.flags)
        await svc.create(TriggerSpec(tenant_id=tenant, name="signed", kind=TriggerKind.EVENT, template_key=HC,
                                     event_pattern="contract.*", input_pointers={"task_queues": "/payload/queues"}))
        receipt = await rt.client().submit_event(EventEnvelope(
            tenant_id=tenant, event_id=uuid.uuid4().hex, event_type="contract.signed", source_app="settler",
            payload={"queues": [queue]}, occurred_at=datetime.now(UTC)))
        await save(rt, "route_event", route_workflow_id(receipt))
