"""The first hour beside a running `jobforge dev`, as a new user types it: flags and tenants.

A flag exported in the shell where one types `jobforge ...` does not reach a stack that already runs; the
refusal says whose reading refused and how to turn the flag on; `jobforge dev --enable` and `jobforge flags
set` do reach the workers. A mistyped tenant is refused everywhere with `unknown_tenant`.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.procs import BIN, env_with, free_port, jobforge, start_dev, stop_dev, wait_for
from workers.stack import StackState

pytestmark = pytest.mark.e2e

HEALTHCHECK = "autopilot.jobforge.healthcheck"
VERIFY = "autopilot.readylayer.verify_pack"


@pytest.fixture
def stack(stack_tmp_path: Path) -> Iterator[tuple[dict[str, str], StackState]]:
    """`jobforge dev --enable JOBFORGE_AUTOPILOT_JOBS_ENABLED` in a terminal of its own; the environment of the
    user's other terminal (no flag in it) and the stack's state."""
    home = stack_tmp_path / "home"
    ports = {"temporal": free_port(), "ui": free_port(), "pg": free_port(), "api": free_port()}
    env = env_with({"JOBFORGE_HOME": str(home)})
    log = stack_tmp_path / "dev.log"
    proc = start_dev(env, ports, log, "--enable", "JOBFORGE_AUTOPILOT_JOBS_ENABLED", "--headless")
    try:
        wait_for(lambda: StackState.read(home / "state.json") is not None or proc.poll() is not None, 90,
                 "the state file")
        state = StackState.read(home / "state.json")
        assert proc.poll() is None and state is not None, log.read_text()[-3000:]
        # the banner follows the state file: wait for it rather than read the log at once
        banner = "flags on      : JOBFORGE_AUTOPILOT_JOBS_ENABLED"
        wait_for(lambda: banner in log.read_text() or proc.poll() is not None, 30, "the banner")
        assert banner in log.read_text(), log.read_text()[-3000:]
        yield env, state
    finally:
        stop_dev(proc, log)


def refused(answer: subprocess.CompletedProcess[str], code: str) -> str:
    """The one error line of a refused command (exit 2, nothing on stdout)."""
    assert answer.returncode == 2, (answer.returncode, answer.stdout, answer.stderr)
    assert answer.stdout == "" and f"error: {code}: " in answer.stderr, answer.stderr
    return " ".join(answer.stderr.split())


def test_flags_reach_a_running_stack_and_a_refusal_says_whose_reading_refused(
        stack: tuple[dict[str, str], StackState], tmp_path: Path) -> None:
    """`--enable` reaches the workers and the commands beside them; an `export` in the user's shell does not,
    and `jobs request`, `verify` and `events submit --wait` say so naming the stack's worker and the command
    that works; a raw Temporal start refused by the worker names that worker process; `flags set` fixes it."""
    env, state = stack
    worker_pid = state.pids["worker0"]
    flags = {f["name"]: f for f in json.loads(jobforge("flags", "--json", env=env).stdout)}
    assert flags["JOBFORGE_AUTOPILOT_JOBS_ENABLED"] == {"name": "JOBFORGE_AUTOPILOT_JOBS_ENABLED", "enabled": True,
                                                        "source": "env"}  # the stack's environment, not this one
    assert flags["VERIFY_PACK_ENABLED"]["enabled"] is False

    # --enable gave the flag to the workers: a healthcheck runs from a terminal that has no flag set
    done = jobforge("jobs", "request", HEALTHCHECK, "--tenant", "demo", "--wait", "--json", env=env)
    assert done.returncode == 0 and json.loads(done.stdout)["result"]["healthy"] is True, done.stderr

    # what the README warns of: an export in this shell does not reach the running stack
    shell = {**env, "VERIFY_PACK_ENABLED": "1", "JOBFORGE_EVENTS_ENABLED": "1"}
    stack_workers = f"is off in the dev stack's jobforge-worker process (pid {worker_pid};"
    for args, flag in [(("jobs", "request", VERIFY, "--tenant", "demo", "--inputs", '{"repo_path": "/srv/app"}'),
                        "VERIFY_PACK_ENABLED"),
                       (("verify", "examples/python-sample"), "VERIFY_PACK_ENABLED"),
                       (("events", "submit", "--tenant", "demo", "--type", "order.paid", "--wait"),
                        "JOBFORGE_EVENTS_ENABLED")]:
        line = refused(jobforge(*args, env=shell), "feature_disabled")
        assert f"{flag} {stack_workers}" in line, line
        assert "not set in the environment, and no fleet-wide override" in line
        assert f"this shell's {flag}='1' does not reach a running stack" in line
        assert f"`jobforge flags set {flag} on`" in line and f"`jobforge dev --enable {flag}`" in line

    # a start straight through Temporal passes no CLI: the worker refuses it, naming its own process
    queue = {t["key"]: t["task_queue"] for t in json.loads(jobforge("templates", "--json", env=env).stdout)}[VERIFY]
    workflow_id = f"raw-{uuid.uuid4().hex}"
    job = {"tenant_id": "demo", "template_key": VERIFY, "inputs": {"repo_path": str(tmp_path)}}
    started = subprocess.run([str(BIN / "temporal"), "workflow", "start", "--address", state.temporal_address,
                              "--type", VERIFY, "--task-queue", queue, "--workflow-id", workflow_id,
                              "--input", json.dumps(job)], capture_output=True, text=True, timeout=30, check=False)
    assert started.returncode == 0, started.stderr

    def rejected() -> bool:
        shown = jobforge("runs", "show", workflow_id, "--json", env=env)
        return shown.returncode == 0 and json.loads(shown.stdout)["status"] == "rejected"

    wait_for(rejected, 30, "admission to reject the raw start")
    record = json.loads(jobforge("runs", "show", workflow_id, "--json", env=env).stdout)
    assert record["error"].startswith(f"feature disabled: VERIFY_PACK_ENABLED is off in the jobforge-worker process "
                                      f"(pid {worker_pid}): not set in the environment"), record["error"]

    # the command the refusal names reaches every process of the running stack
    assert jobforge("flags", "set", "JOBFORGE_EVENTS_ENABLED", "on", env=env).returncode == 0
    sent = jobforge("events", "submit", "--tenant", "demo", "--type", "order.paid", "--wait", "--json", env=env)
    assert sent.returncode == 0, sent.stderr
    assert json.loads(sent.stdout)["routing"]["fires"] == []  # routed by the worker: no trigger matched


def test_a_mistyped_tenant_is_refused_everywhere(stack: tuple[dict[str, str], StackState]) -> None:
    """`jobforge dev` made `demo`; `acem` does not exist: requests, events, triggers, lists and a raw Temporal
    start for it are refused with unknown_tenant naming the fix; `tenants create` makes it usable."""
    env, state = stack
    assert [t["tenant_id"] for t in json.loads(jobforge("tenants", "list", "--json", env=env).stdout)] == ["demo"]
    assert jobforge("flags", "set", "JOBFORGE_EVENTS_ENABLED", "on", env=env).returncode == 0
    assert jobforge("flags", "set", "JOBFORGE_TRIGGERS_ENABLED", "on", env=env).returncode == 0

    fix = "no tenant 'acem': create it with `jobforge tenants create acem`"
    for args in [("jobs", "request", HEALTHCHECK, "--tenant", "acem"),
                 ("jobs", "request", HEALTHCHECK, "--tenant", "acem", "--wait"),
                 ("runs", "list", "--tenant", "acem"),
                 ("runs", "list", "--tenant", "acem", "--json"),
                 ("events", "submit", "--tenant", "acem", "--type", "order.paid", "--wait"),
                 ("events", "list", "--tenant", "acem"),
                 ("triggers", "create", "--tenant", "acem", "--name", "n", "--event", "order.*", "--template",
                  HEALTHCHECK),
                 ("triggers", "list", "--tenant", "acem"),
                 ("audit", "list", "--tenant", "acem"),
                 ("keys", "create", "--tenant", "acem", "--scopes", "runs:read")]:
        assert fix in refused(jobforge(*args, env=env), "unknown_tenant"), args

    # a raw start names a tenant admission does not know: a rejected run, typed unknown_tenant
    workflow_id = f"raw-{uuid.uuid4().hex}"
    started = subprocess.run([str(BIN / "temporal"), "workflow", "start", "--address", state.temporal_address,
                              "--type", HEALTHCHECK, "--task-queue", "jobforge", "--workflow-id", workflow_id,
                              "--input", json.dumps({"tenant_id": "acem", "template_key": HEALTHCHECK})],
                             capture_output=True, text=True, timeout=30, check=False)
    assert started.returncode == 0, started.stderr
    result = subprocess.run([str(BIN / "temporal"), "workflow", "result", "--address", state.temporal_address,
                             "--workflow-id", workflow_id, "-o", "json"], capture_output=True, text=True, timeout=60,
                            check=False)
    assert "unknown_tenant" in result.stdout + result.stderr, (result.stdout, result.stderr)

    assert jobforge("tenants", "create", "acme", env=env).returncode == 0
    done = jobforge("jobs", "request", HEALTHCHECK, "--tenant", "acme", "--wait", "--json", env=env)
    assert done.returncode == 0, done.stderr
    listed = jobforge("runs", "list", "--tenant", "acme", "--json", env=env)
    assert [r["run_id"] for r in json.loads(listed.stdout)] == [json.loads(done.stdout)["run"]["run_id"]]
