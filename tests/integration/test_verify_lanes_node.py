"""A Node plan's two lanes: lint ∥ typecheck in a snapshot of the tree install left, beside build → test in the
run's tree, with the same results a run of the stages one after another gives.

The repository's scripts meet each other through files in the steps' shared home: lint and typecheck wait for
build to have written ``dist/`` (so they pass only when they run while it does, in a tree without it), build
waits for both to have started; every wait is on a file, bounded, never a sleep standing in for an order.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.exceptions import ApplicationError
from temporalio.worker import Replayer, Worker

from shared.temporal import DATA_CONVERTER
from shared.verify.models import (
    TEMPLATE_KEY,
    Snapshot,
    SnapshotInput,
    StepName,
    StepStatus,
    Verdict,
    VerifyReport,
)
from tests.integration.test_verify_pack import log_text, settings, verify_on
from tests.support.tenants import ensure_tenants
from tests.support.verify_repos import node_repo, write_files
from tests.support.workers import running
from workers.activity_errors import ActivityErrors
from workers.runtime import Runtime
from workers.worker import WORKFLOW_RUNNER, collect
from workflows import discover
from workflows._job import JobArguments

pytestmark = pytest.mark.integration

__all__ = ["settings", "verify_on"]  # fixtures, used by name

#: waits until a file exists in the steps' home (``$HOME``), at most 60 s
WAIT = """
const fs = require('fs'), path = require('path');
function waitFor(name) {
  const file = path.join(process.env.HOME, name), until = Date.now() + 60000;
  const pause = new Int32Array(new SharedArrayBuffer(4));
  while (!fs.existsSync(file)) {
    if (Date.now() > until) { console.log('gave up waiting for ' + name); process.exit(9); }
    Atomics.wait(pause, 0, 0, 20);
  }
}
function mark(name) { fs.writeFileSync(path.join(process.env.HOME, name), process.cwd()); }
"""

#: lint and typecheck: start, wait for build to have written dist/ in the run's tree, then look at their own tree
CHECK = WAIT + """
const step = process.argv[2];
console.log(step + ' cwd ' + process.cwd());
mark(step + '-started');
waitFor('build-done');
if (fs.existsSync('dist')) { console.log(step + ' sees dist/'); process.exit(1); }
console.log(step + ' sees no dist/');
require('dep');
fs.mkdirSync('node_modules/.cache/' + step, {recursive: true});
fs.writeFileSync('node_modules/.cache/' + step + '/cached', step);
fs.writeFileSync('node_modules/.tmp/' + step + '.tsbuildinfo', step);
try { fs.writeFileSync('node_modules/' + step + '-was-here', step); console.log('node_modules writable'); }
catch (err) { console.log('node_modules read-only: ' + err.code); }
"""

BUILD = WAIT + """
console.log('build cwd ' + process.cwd());
waitFor('lint-started');
waitFor('typecheck-started');
fs.mkdirSync('dist', {recursive: true});
fs.writeFileSync('dist/out.js', 'module.exports = 42;\\n');
mark('build-done');
"""

TEST = """
const fs = require('fs');
console.log('test cwd ' + process.cwd());
if (require('./dist/out.js') !== 42) process.exit(1);
require('dep');
const shared = fs.existsSync('node_modules/.cache/lint') || fs.existsSync('node_modules/.tmp/lint.tsbuildinfo');
console.log(shared ? 'lint cache shared' : 'lint cache private');
console.log(fs.existsSync('node_modules/lint-was-here') ? 'lint wrote node_modules' : 'node_modules untouched');
"""


def lanes_repo(root: Path, name: str) -> Path:
    """Lint, typecheck, build and test scripts that meet as the module docstring says; one local dependency, so
    install (offline) leaves a node_modules."""
    repo = node_repo(root, name, {"lint": "node check.js lint", "typecheck": "node check.js typecheck",
                                  "build": "node build.js", "test": "node test.js"},
                     {"check.js": CHECK, "build.js": BUILD, "test.js": TEST,
                      "dep/package.json": json.dumps({"name": "dep", "version": "1.0.0"}) + "\n",
                      "dep/index.js": "module.exports = 'dep';\n"})
    package = json.loads((repo / "package.json").read_text())
    package["dependencies"] = {"dep": "file:./dep"}
    write_files(repo, {"package.json": json.dumps(package, indent=2) + "\n"})
    return repo


async def run(rt: Runtime, repo: Path) -> tuple[VerifyReport, list[Any]]:
    """The report of a run of ``repo`` and its history's events; the history replays on today's workflows."""
    await ensure_tenants(rt, "acme")
    handle = await rt.client().request_job("acme", TEMPLATE_KEY, {"repo_path": str(repo),
                                                                   "options": {"no_cache": True}}, actor="test")
    report = await rt.client().result(handle)
    assert isinstance(report, VerifyReport)
    assert rt.temporal is not None
    history = await rt.temporal.get_workflow_handle(handle.workflow_id).fetch_history()
    replayer = Replayer(workflows=discover(), data_converter=DATA_CONVERTER, workflow_runner=WORKFLOW_RUNNER,
                        interceptors=[JobArguments(frozenset({TEMPLATE_KEY}))])
    replayed = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert replayed.replay_failure is None, replayed.replay_failure
    return report, list(history.events)


def step_spans(events: list[Any]) -> Mapping[str, tuple[float, float]]:
    """Each check step's (started, closed) times from the history: its run_step activity's last attempt."""
    scheduled: dict[int, str] = {}
    started: dict[int, float] = {}
    spans: dict[str, tuple[float, float]] = {}
    for event in events:
        at = event.event_time.ToDatetime().timestamp()
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attrs = event.activity_task_scheduled_event_attributes
            if attrs.activity_type.name == "verify.run_step":
                scheduled[event.event_id] = json.loads(attrs.input.payloads[0].data)["step"]
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started[event.activity_task_started_event_attributes.scheduled_event_id] = at
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            sid = event.activity_task_completed_event_attributes.scheduled_event_id
            if sid in scheduled:
                spans[scheduled[sid]] = (started[sid], at)
    return spans


def activity_names(events: list[Any]) -> list[str]:
    return [e.activity_task_scheduled_event_attributes.activity_type.name for e in events
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED]


async def test_checks_run_in_a_snapshot_beside_build_then_test(runtime: Runtime, worker: None, verify_on: None,
                                                                repos: Path) -> None:
    """lint and typecheck run in a copy of the installed tree, without build's dist/, while build runs; test runs
    after build in the run's tree and finds its output; the step activities overlap in the history."""
    report, events = await run(runtime, lanes_repo(repos, "lanes"))
    statuses = {r.name: r.status for r in report.steps}
    assert report.verdict is Verdict.PASSED, [(r.name, r.status, r.reason, r.tail) for r in report.steps]
    assert statuses == {StepName.INSTALL: StepStatus.PASSED, **dict.fromkeys(
        (StepName.LINT, StepName.TYPECHECK, StepName.BUILD, StepName.TEST), StepStatus.PASSED)}
    assert [r.name for r in report.steps] == [StepName.INSTALL, StepName.LINT, StepName.TYPECHECK, StepName.BUILD,
                                              StepName.TEST]
    for step in (StepName.LINT, StepName.TYPECHECK):
        text = log_text(report, step)
        assert f"{step.value} cwd " in text and text.split(f"{step.value} cwd ")[1].split()[0].endswith("/snapshot")
        assert f"{step.value} sees no dist/" in text
    assert log_text(report, StepName.BUILD).split("build cwd ")[1].split()[0].endswith("/tree")
    test_log = log_text(report, StepName.TEST)
    assert test_log.split("test cwd ")[1].split()[0].endswith("/tree")
    if report.sandbox.enabled:  # the snapshot's steps cannot write the run's node_modules; their caches are theirs
        assert "node_modules read-only: EROFS" in log_text(report, StepName.LINT)
        assert "lint cache private" in test_log and "node_modules untouched" in test_log
    assert activity_names(events) == ["verify.prepare", "verify.install", "verify.snapshot", *["verify.run_step"] * 4,
                                      "verify.finalize"]
    spans = step_spans(events)
    lint, typecheck, build, test = (spans[s] for s in ("lint", "typecheck", "build", "test"))
    for check in (lint, typecheck):  # each check ran while build did
        assert check[0] < build[1] and build[0] < check[1]
    assert test[0] >= build[1]


async def test_a_failing_lint_in_the_snapshot_lane_fails_the_verdict_and_build_and_test_still_report(
        runtime: Runtime, worker: None, verify_on: None, repos: Path) -> None:
    """A lint failure in the snapshot lane fails the verdict; build and test run and report as without lanes; an
    install with nothing to do (no activity) still gets its snapshot."""
    repo = node_repo(repos, "lanes-lint", {"lint": "node -e \"console.log('E1 bad'); process.exit(3)\"",
                                           "typecheck": "node -e \"console.log('types ok')\"",
                                           "build": "node -e \"require('fs').writeFileSync('built', '1')\"",
                                           "test": "node -e \"require('fs').readFileSync('built')\""})
    report, events = await run(runtime, repo)
    assert report.verdict is Verdict.FAILED and not report.passed
    by = {r.name: r for r in report.steps}
    assert (by[StepName.LINT].status, by[StepName.LINT].exit_code) == (StepStatus.FAILED, 3)
    assert "E1 bad" in by[StepName.LINT].tail
    assert [by[s].status for s in (StepName.INSTALL, StepName.TYPECHECK, StepName.BUILD, StepName.TEST)] == [
        StepStatus.SKIPPED, StepStatus.PASSED, StepStatus.PASSED, StepStatus.PASSED]
    assert [r.name for r in report.steps] == [StepName.INSTALL, StepName.LINT, StepName.TYPECHECK, StepName.BUILD,
                                              StepName.TEST]
    assert report.error == ""
    assert activity_names(events) == ["verify.prepare", "verify.snapshot", *["verify.run_step"] * 4, "verify.finalize"]


@activity.defn(name="verify.snapshot")
async def no_snapshot(req: SnapshotInput) -> Snapshot:
    """The snapshot activity of a worker whose disk is full: it fails for good."""
    raise ApplicationError("No space left on device", type="OSError", non_retryable=True)


@pytest.fixture
async def worker_without_snapshots(runtime: Runtime) -> AsyncIterator[None]:
    """JobForge's workflows and activities for this test's task queues, but a snapshot that cannot be made."""
    assert runtime.temporal is not None
    workflows, activities = collect(runtime)
    kept = [a for a in activities if getattr(a, "__temporal_activity_definition").name != "verify.snapshot"]
    queues = runtime.settings.worker_task_queues or runtime.registry.task_queues(runtime.settings)
    workers = [Worker(runtime.temporal, task_queue=queue, workflows=workflows, activities=[*kept, no_snapshot],
                      workflow_runner=WORKFLOW_RUNNER,
                      interceptors=[ActivityErrors(), JobArguments(frozenset(s.key for s in runtime.registry))])
               for queue in queues]
    async with running(workers):
        yield None


async def test_a_snapshot_that_cannot_be_made_runs_the_stages_one_after_another(
        runtime: Runtime, worker_without_snapshots: None, verify_on: None, repos: Path) -> None:
    """When the snapshot activity fails for good, the checks run in the run's tree before build, as the stages
    say, and the run's results are those of a run without lanes."""
    repo = node_repo(repos, "lanes-fallback", {
        "lint": "node -e \"if (require('fs').existsSync('built')) process.exit(5)\"",
        "typecheck": "node -e \"console.log('types ok')\"",
        "build": "node -e \"require('fs').writeFileSync('built', '1')\"",
        "test": "node -e \"require('fs').readFileSync('built')\""})
    report, events = await run(runtime, repo)
    assert report.verdict is Verdict.PASSED, [(r.name, r.status, r.reason, r.tail) for r in report.steps]
    assert activity_names(events) == ["verify.prepare", "verify.snapshot", *["verify.run_step"] * 4, "verify.finalize"]
    assert log_text(report, StepName.LINT).split("# cwd: ")[1].split()[0].endswith("/tree")
    spans = step_spans(events)
    assert max(spans["lint"][1], spans["typecheck"][1]) <= spans["build"][0] and spans["build"][1] <= spans["test"][0]
