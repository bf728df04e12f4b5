"""Cron triggers edited with the stock `temporal schedule ...` CLI, then looked at and put right with `jobforge
triggers ...`, each a process as a user runs it (the workers run in the test process)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError

from shared.flags import Flag
from shared.settings import Settings
from shared.triggers.schedules import schedule_id
from tests.support.procs import env_with
from tests.support.procs import jobforge as run_jobforge
from workers.runtime import Runtime
from workers.stack import temporal_binary

pytestmark = pytest.mark.e2e

HC = "autopilot.jobforge.healthcheck"
FLAGS = (Flag.EVENTS, Flag.TRIGGERS, Flag.AUTOPILOT_JOBS, Flag.AUDIT_LOGGING)


@pytest.fixture
def all_on(monkeypatch: pytest.MonkeyPatch) -> None:
    for flag in FLAGS:
        monkeypatch.setenv(flag.value, "1")


@pytest.fixture
def cli_env(settings: Settings) -> dict[str, str]:
    return env_with({
        "JOBFORGE_TEMPORAL_ADDRESS": settings.temporal_address,
        "JOBFORGE_DATABASE_URL": settings.database_url_value() or "",
        "JOBFORGE_TASK_QUEUE": settings.task_queue,
        "JOBFORGE_HOME": str(settings.home),
        "TERM": "dumb", "COLUMNS": "250",
        **{flag.value: "1" for flag in FLAGS},
    })


def temporal(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """The stock Temporal CLI, exactly as a user types it (plus the address of the test's server)."""
    done = subprocess.run([str(temporal_binary()), *args, "--address", settings.temporal_address],
                          capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    return done


async def jf(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(run_jobforge, *args, env=env)


def one_line_error(answer: subprocess.CompletedProcess[str]) -> str:
    assert answer.returncode == 2, (answer.stdout, answer.stderr)
    lines = answer.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in answer.stderr, answer.stderr
    return lines[0]


Fires = list[dict[str, Any]]


async def wait_fires(env: dict[str, str], t: str, name: str, ok: Callable[[Fires], bool], within: float = 30) -> Fires:
    """The trigger's recorded fire decisions once ``ok(fires)`` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        answer = await jf(env, "triggers", "dry-runs", "--tenant", t, "--trigger", name, "--all", "--json")
        assert answer.returncode == 0, answer.stderr
        fires: Fires = json.loads(answer.stdout)
        if ok(fires):
            return fires
        if loop.time() > deadline:
            raise AssertionError(f"fires of {name}: {fires}")
        await asyncio.sleep(0.3)


def reasons(fires: Fires) -> list[str]:
    return [r for f in fires for r in f["reasons"]]


async def test_stock_schedule_update_drifts_fails_fast_and_repair_restores(
        runtime: Runtime, worker: None, all_on: None, cli_env: dict[str, str]) -> None:
    """`temporal schedule update` as the stock CLI does it (whole action replaced: no input, no search
    attributes, catch-up window reset) shows as `drifted` naming each difference; its fires fail at once with
    `trigger_input_invalid` and are recorded as skipped; `jobforge triggers repair` restores the action and
    window keeping the new times, after which fires work; `jobforge triggers update` edits through JobForge."""
    t, settings = f"t{uuid.uuid4().hex[:10]}", runtime.settings
    await runtime.gate.tenants.create_tenant(t)
    sid = schedule_id(t, "nightly")
    made = await jf(cli_env, "triggers", "create", "--tenant", t, "--name", "nightly", "--cron", "0 3 * * *",
                    "--timezone", "Europe/Berlin", "--template", HC, "--catchup-window", "120",
                    "--inputs", json.dumps({"task_queues": [settings.task_queue]}), "--json")
    assert made.returncode == 0, made.stderr
    created = json.loads(made.stdout)
    assert created["state"] == "active" and created["live"]["spec"] == "0 3 * * *" and not created["drift"]
    assert created["live"]["timezone"] == "Europe/Berlin" and created["live"]["catchup_window_seconds"] == 120

    # what a user types after reading `temporal schedule update --help`
    await asyncio.to_thread(temporal, settings, "schedule", "update", "--schedule-id", sid, "--interval", "1s",
                            "--workflow-id", f"jobforge/{t}/trigger/nightly/fire", "--task-queue", settings.task_queue,
                            "--type", "jobforge.trigger.fire")
    shown = await jf(cli_env, "triggers", "show", "nightly", "--tenant", t, "--json")
    assert shown.returncode == 0, shown.stderr
    view = json.loads(shown.stdout)
    assert view["state"] == "drifted", view
    assert view["live"]["spec"] == "every 1s" and view["live"]["timezone"] == "UTC"
    drift = "\n".join(view["drift"])
    assert "input: missing" in drift and "search attribute JobForgeTenant: missing" in drift
    assert "catch-up window: 31536000s" in drift
    assert any(e.startswith("times: every 1s") for e in view["edited"]), view["edited"]
    assert view["fix"] == f"jobforge triggers repair nightly --tenant {t}"
    text = await jf(cli_env, "triggers", "show", "nightly", "--tenant", t)
    assert "drifted" in text.stdout and "input: missing" in text.stdout and view["fix"] in text.stdout
    listed = await jf(cli_env, "triggers", "list", "--tenant", t)
    assert "drifted" in listed.stdout and view["fix"] in listed.stdout

    # each fire fails at once, typed, and the trigger's fires say why
    fires = await wait_fires(cli_env, t, "nightly", lambda fs: len(fs) >= 2)
    assert all(f["verdict"] == "skip" for f in fires)
    assert all("jobforge.trigger.fire takes one argument" in r and "triggers repair nightly" in r
               for r in reasons(fires))
    desc = await runtime.temporal.get_schedule_handle(sid).describe()  # type: ignore[union-attr]
    failed = runtime.temporal.get_workflow_handle(desc.info.recent_actions[0].action.workflow_id)  # type: ignore
    with pytest.raises(WorkflowFailureError) as info:
        await asyncio.wait_for(failed.result(), 10)
    assert isinstance(info.value.cause, ApplicationError) and info.value.cause.type == "trigger_input_invalid"

    repaired = await jf(cli_env, "triggers", "repair", "nightly", "--tenant", t)
    assert repaired.returncode == 0, repaired.stderr
    assert "restored input: missing" in repaired.stdout and "kept times: every 1s" in repaired.stdout
    after = json.loads((await jf(cli_env, "triggers", "show", "nightly", "--tenant", t, "--json")).stdout)
    assert after["state"] == "active" and not after["drift"] and not after["edited"], after
    assert after["trigger"]["interval_seconds"] == 1 and after["trigger"]["cron"] is None
    assert after["live"]["catchup_window_seconds"] == 120
    desc = await runtime.temporal.get_schedule_handle(sid).describe()  # type: ignore[union-attr]
    assert {p.key.name: p.value for p in desc.schedule.action.typed_search_attributes}["JobForgeTenant"] == t  # type: ignore[union-attr]
    await wait_fires(cli_env, t, "nightly", lambda fs: any(f["verdict"] == "fire" and f["run_workflow_id"]
                                                           for f in fs))

    updated = await jf(cli_env, "triggers", "update", "nightly", "--tenant", t, "--cron", "0 5 * * 1-5",
                       "--timezone", "Asia/Tokyo", "--overlap", "buffer_one", "--jitter", "30", "--json")
    assert updated.returncode == 0, updated.stderr
    u = json.loads(updated.stdout)
    assert u["state"] == "active" and not u["drift"] and not u["edited"], u
    assert (u["live"]["spec"], u["live"]["timezone"], u["live"]["overlap"], u["live"]["jitter_seconds"]) == \
        ("0 5 * * 1-5", "Asia/Tokyo", "buffer_one", 30)
    assert (u["trigger"]["cron"], u["trigger"]["timezone"], u["live"]["catchup_window_seconds"]) == \
        ("0 5 * * 1-5", "Asia/Tokyo", 120)
    for bad in (("--cron", "61 * * * *"), ("--timezone", "Mars/Olympus")):
        refused = one_line_error(await jf(cli_env, "triggers", "update", "nightly", "--tenant", t, *bad))
        assert "invalid_request: Temporal refused the schedule" in refused, refused
    kept = json.loads((await jf(cli_env, "triggers", "show", "nightly", "--tenant", t, "--json")).stdout)
    assert (kept["trigger"]["cron"], kept["live"]["timezone"]) == ("0 5 * * 1-5", "Asia/Tokyo")
    assert (await jf(cli_env, "triggers", "delete", "nightly", "--tenant", t)).returncode == 0


async def test_deleted_schedule_gives_one_line_errors_and_repair_recreates_it(
        runtime: Runtime, worker: None, all_on: None, cli_env: dict[str, str]) -> None:
    """After `temporal schedule delete`, resume/pause/fire/show/update each exit 2 with one line naming
    `triggers repair` and `triggers delete`; list shows it missing; repair recreates the Schedule."""
    t, settings = f"t{uuid.uuid4().hex[:10]}", runtime.settings
    await runtime.gate.tenants.create_tenant(t)
    made = await jf(cli_env, "triggers", "create", "--tenant", t, "--name", "gone", "--cron", "0 3 * * *",
                    "--template", HC, "--dry-run", "--inputs", json.dumps({"task_queues": [settings.task_queue]}))
    assert made.returncode == 0, made.stderr
    await asyncio.to_thread(temporal, settings, "schedule", "delete", "--schedule-id", schedule_id(t, "gone"))
    for verb in (("resume",), ("pause",), ("fire",), ("show",), ("update", "--timezone", "UTC")):
        line = one_line_error(await jf(cli_env, "triggers", verb[0], "gone", "--tenant", t, *verb[1:]))
        assert "schedule_missing" in line, (verb, line)
        assert f"jobforge triggers repair gone --tenant {t}" in line, (verb, line)
        assert f"jobforge triggers delete gone --tenant {t}" in line, (verb, line)
        assert "is its" not in line
    listed = await jf(cli_env, "triggers", "list", "--tenant", t)
    assert listed.returncode == 0 and "schedule_missing" in listed.stdout and "triggers repair gone" in listed.stdout

    repaired = await jf(cli_env, "triggers", "repair", "gone", "--tenant", t)
    assert repaired.returncode == 0 and "recreated the Schedule" in repaired.stdout, repaired.stderr
    view = json.loads((await jf(cli_env, "triggers", "show", "gone", "--tenant", t, "--json")).stdout)
    assert view["state"] == "active" and view["live"]["spec"] == "0 3 * * *" and not view["drift"]
    fired = await jf(cli_env, "triggers", "fire", "gone", "--tenant", t)
    assert fired.returncode == 0 and fired.stdout.startswith("dry_run"), (fired.stdout, fired.stderr)
    assert (await jf(cli_env, "triggers", "delete", "gone", "--tenant", t)).returncode == 0


async def test_strict_trigger_says_so_dry_runs_and_relaxes(
        runtime: Runtime, worker: None, all_on: None, cli_env: dict[str, str]) -> None:
    """`--strict` without an allow list is refused naming `--allow`; with one, `show` says it is strict and a
    fire leaves a dry-run record; `update --no-strict` relaxes it and the next fire starts a run."""
    t, settings = f"t{uuid.uuid4().hex[:10]}", runtime.settings
    await runtime.gate.tenants.create_tenant(t)
    base = ("triggers", "create", "--tenant", t, "--name", "nightly", "--cron", "0 3 * * *", "--template", HC,
            "--inputs", json.dumps({"task_queues": [settings.task_queue]}), "--strict")
    refused = one_line_error(await jf(cli_env, *base))
    assert "--allow template:" + HC in refused
    made = await jf(cli_env, *base, "--allow", f"template:{HC}")
    assert made.returncode == 0, made.stderr
    shown = await jf(cli_env, "triggers", "show", "nightly", "--tenant", t)
    assert "strict: every fire must match an allow-list entry" in shown.stdout and "--no-strict" in shown.stdout
    first = await jf(cli_env, "triggers", "fire", "nightly", "--tenant", t)
    assert first.returncode == 0 and first.stdout.startswith("dry_run"), first.stdout
    dry = await jf(cli_env, "triggers", "dry-runs", "--tenant", t, "--json")
    assert len(json.loads(dry.stdout)) == 1

    relaxed = await jf(cli_env, "triggers", "update", "nightly", "--tenant", t, "--no-strict", "--json")
    assert relaxed.returncode == 0, relaxed.stderr
    view = json.loads(relaxed.stdout)
    assert not view["strict"] and view["trigger"]["safety"]["allow"] == [f"template:{HC}"]
    assert not view["trigger"]["safety"]["dry_run"] and view["trigger"]["safety"]["cooldown_seconds"] == 0
    fired = await jf(cli_env, "triggers", "fire", "nightly", "--tenant", t)
    assert fired.returncode == 0 and fired.stdout.startswith("fire") and "→ run" in fired.stdout, fired.stdout
    cleared = one_line_error(await jf(cli_env, "triggers", "update", "nightly", "--tenant", t, "--strict",
                                      "--clear-allow"))
    assert "needs an allow list" in cleared
    assert (await jf(cli_env, "triggers", "delete", "nightly", "--tenant", t)).returncode == 0


async def test_a_fire_started_with_a_bad_argument_fails_at_once(runtime: Runtime, worker: None, all_on: None) -> None:
    """`jobforge.trigger.fire` started by hand (the stock CLI) with a malformed argument, or one no converter
    reads, fails within seconds (typed when it could be read) instead of retrying its workflow task forever."""
    settings = runtime.settings
    cases = ((["--input", '{"tenant_id": "acme", "trigger_name": 7}'], "trigger_input_invalid"),
             (["--input", '"x"', "--input-meta", "encoding=weird/enc"], "KeyError"))
    for extra, failure in cases:
        wid = f"jobforge/acme/trigger/hand/manual/{uuid.uuid4().hex}"
        await asyncio.to_thread(temporal, settings, "workflow", "start", "--type", "jobforge.trigger.fire",
                                "--task-queue", settings.task_queue, "--workflow-id", wid, *extra)
        handle = runtime.temporal.get_workflow_handle(wid)  # type: ignore[union-attr]
        with pytest.raises(WorkflowFailureError) as info:
            await asyncio.wait_for(handle.result(), 15)
        assert isinstance(info.value.cause, ApplicationError) and info.value.cause.type == failure, info.value.cause


async def test_a_complete_stock_update_does_not_drift(
        runtime: Runtime, worker: None, all_on: None, cli_env: dict[str, str]) -> None:
    """A stock update that gives the input, search attributes and catch-up window JobForge wrote is no drift:
    only its new times show, as an edit kept."""
    t, settings = f"t{uuid.uuid4().hex[:10]}", runtime.settings
    await runtime.gate.tenants.create_tenant(t)
    made = await jf(cli_env, "triggers", "create", "--tenant", t, "--name", "nightly", "--cron", "0 3 * * *",
                    "--template", HC, "--json")
    assert made.returncode == 0, made.stderr
    trigger_id = json.loads(made.stdout)["trigger"]["trigger_id"]
    fire_input = {"tenant_id": t, "trigger_id": trigger_id, "trigger_name": "nightly", "source": "schedule",
                  "actor": "trigger:nightly"}
    await asyncio.to_thread(
        temporal, settings, "schedule", "update", "--schedule-id", schedule_id(t, "nightly"), "--cron", "0 4 * * *",
        "--workflow-id", f"jobforge/{t}/trigger/nightly/fire", "--task-queue", settings.task_queue,
        "--type", "jobforge.trigger.fire", "--input", json.dumps(fire_input), "--catchup-window", "60s",
        "--search-attribute", f'JobForgeTenant="{t}"', "--search-attribute", 'JobForgeTemplate="jobforge.trigger.fire"',
        "--search-attribute", f'JobForgeTrace="{trigger_id}"')
    view = json.loads((await jf(cli_env, "triggers", "show", "nightly", "--tenant", t, "--json")).stdout)
    assert view["state"] == "active" and view["drift"] == [], view
    assert view["edited"] == ["times: 0 4 * * * (JobForge had 0 3 * * *)"] and view["live"]["spec"] == "0 4 * * *"
    assert (await jf(cli_env, "triggers", "delete", "nightly", "--tenant", t)).returncode == 0
