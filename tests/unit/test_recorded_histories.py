"""Histories recorded by real runs of older JobForge code replay on today's workflows (or, for a path
whose patch is deprecated, are known not to).

Each file in ``tests/histories`` is ``temporal workflow show --output json`` of one run (compact JSON),
named ``<commit>_<what>.json`` after the commit whose code ran it on a dev server:

- ``567724f``: bookkeeping (admit, capture_provenance, finish_run) as regular activities, before the
  ``jobforge.bookkeeping-local`` patch; an event routed in steps (``events.accept``, ``triggers.fire``)
  before the ``jobforge.route.one-step`` patch.
- ``cbb09be``: an event routed in one step (the one-step patch marker), bookkeeping still regular.
- ``8f3f4a8``: local bookkeeping (its patch marker), before the admission search-attribute upsert.
- ``a9aeb4a``: the upsert under its ``patched`` marker (``jobforge.admission-search-attributes``), from
  a refused raw start and from an argument refused before admission.
- ``bff6e19``: a run cancelled while its checks ran, whose cancellation surfaced through the cancelled
  activity and was recorded as a failure (before ``jobforge.cancelled-through-activity``);
  ``19e09c0``: the same on the patched path (recorded cancelled). Both ran with the test doubles of
  ``tests/integration/test_workflow_logic.py`` (the workflow code is what is recorded).
- ``22d8e08``: the per-tenant event router (pending, swept and signalled events, a failed one retried
  after its back-off timer; still open when exported: routers never finish) and trigger fires (decided;
  unreadable input recorded as skipped), with the same doubles. Routers continue as new for ever, so
  any change to their steps must replay these.
- ``e751c9c``: a run JobForge started with the memo that says its bookkeeping is local
  (``shared.starts.BOOKKEEPING_MEMO``): local-activity markers and no patch marker or upsert.
- ``9172fad``: a verify-pack run of a Node repository (lint failing, typecheck, build and test passing, nothing
  to install) before ``Plan.lanes``: its stages one after another (lint ∥ typecheck, build, test) in the run's
  tree, no snapshot; its plan has no lanes, so it replays its stages.
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from workers.worker import WORKFLOW_RUNNER
from workflows import discover
from workflows._job import JobArguments

HISTORIES = Path(__file__).resolve().parents[1] / "histories"
TEMPLATES = frozenset({"autopilot.jobforge.healthcheck", "autopilot.readylayer.verify_pack"})
REPLAYABLE = [
    "567724f_healthcheck", "567724f_healthcheck_refused",
    "cbb09be_route_event",
    "8f3f4a8_healthcheck", "8f3f4a8_healthcheck_refused",
    "a9aeb4a_healthcheck", "a9aeb4a_healthcheck_refused", "a9aeb4a_healthcheck_invalid_argument",
    "bff6e19_healthcheck_cancelled", "19e09c0_healthcheck_cancelled",
    "22d8e08_event_router", "22d8e08_trigger_fire", "22d8e08_trigger_fire_invalid_input",
    "e751c9c_healthcheck_memo",
    "9172fad_verify_pack_node",
]


def replayer() -> Replayer:
    """A replayer set up as the worker runs workflows: every workflow, the same runner and interceptor."""
    return Replayer(workflows=discover(), data_converter=pydantic_data_converter, workflow_runner=WORKFLOW_RUNNER,
                    interceptors=[JobArguments(TEMPLATES)])


#: the workflow id a history replays under, where the workflow reads it (an export does not carry it)
WORKFLOW_IDS = {"22d8e08_trigger_fire_invalid_input": "jobforge/acme/trigger/nightly/fire-2026-12-03T07:54:00Z"}


def history(name: str) -> WorkflowHistory:
    return WorkflowHistory.from_json(WORKFLOW_IDS.get(name, name), (HISTORIES / f"{name}.json").read_text())


def test_every_recorded_history_is_checked() -> None:
    """Each checked-in history is replayed by a test here (a new file cannot be forgotten)."""
    assert {path.stem for path in HISTORIES.glob("*.json")} == {*REPLAYABLE, "567724f_route_event"}


@pytest.mark.parametrize("name", REPLAYABLE)
async def test_recorded_history_replays(name: str) -> None:
    """A run recorded on older code replays on today's workflows without a nondeterminism error."""
    result = await replayer().replay_workflow(history(name), raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{name}: {result.replay_failure}"


async def test_stepwise_routing_no_longer_replays() -> None:
    """The routing path before the one-step patch is removed (its patch deprecated): a history of it fails
    replay (its first step's recorded result is not what the one step returns). No such history is kept
    or still running: nothing has started ``jobforge.event.route`` since the per-tenant router, and
    JobForge archives no routing histories."""
    result = await replayer().replay_workflow(history("567724f_route_event"), raise_on_replay_failure=False)
    assert result.replay_failure is not None


def _patch_ids() -> dict[str, str]:
    """Every patch id the workflows call ``patched``/``deprecate_patch`` with -> the module calling it."""
    found: dict[str, str] = {}
    for path in sorted((HISTORIES.parents[1] / "workflows").glob("*.py")):
        module = importlib.import_module(f"workflows.{path.stem}")
        for name in re.findall(r"workflow\.(?:patched|deprecate_patch)\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)",
                               path.read_text()):
            found[getattr(module, name)] = path.name
    return found


def _recorded_patch_ids() -> set[str]:
    ids: set[str] = set()
    for name in {path.stem for path in HISTORIES.glob("*.json")}:
        for event in history(name).events:
            marker = event.marker_recorded_event_attributes
            if event.HasField("marker_recorded_event_attributes") and marker.marker_name == "core_patch":
                ids.add(json.loads(marker.details["patch-data"].payloads[0].data)["id"])
    return ids


def test_every_patch_has_a_recorded_history() -> None:
    """Each patch the workflows still check appears in a recorded history, so its patched path is
    replayed here; record one with tests/histories/record.py (and one of the old path, while kept)."""
    patches = _patch_ids()
    assert set(patches) >= {"jobforge.bookkeeping-local", "jobforge.route.one-step"}  # the scan finds them
    missing = {patch: module for patch, module in patches.items() if patch not in _recorded_patch_ids()}
    assert not missing, f"patches without a recorded history in tests/histories: {missing}"
