"""`jobforge dev` as a user runs it: starts, serves jobs and the UI, stops, restarts with its data."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import urllib.request
from pathlib import Path

import httpx
import pytest

from tests.support.procs import BIN, env_with, free_port, jobforge, start_dev, stop_dev, wait_for
from workers.stack import StackState, pid_alive

pytestmark = pytest.mark.e2e


def test_dev_stack_lifecycle(stack_tmp_path: Path) -> None:
    """The stack serves a healthcheck, the UI and the CLI; Ctrl-C stops it; a restart keeps runs and history."""
    home = stack_tmp_path / "home"
    ports = {"temporal": free_port(), "ui": free_port(), "pg": free_port(), "api": free_port()}
    env = env_with({"JOBFORGE_HOME": str(home), "JOBFORGE_AUTOPILOT_JOBS_ENABLED": "1"})
    log = stack_tmp_path / "dev.log"
    proc = start_dev(env, ports, log)
    try:
        wait_for(lambda: StackState.read(home / "state.json") is not None or proc.poll() is not None, 60,
                 "the state file")
        assert proc.poll() is None, log.read_text()
        state = StackState.read(home / "state.json")
        assert state is not None and state.temporal_address.endswith(str(ports["temporal"]))

        assert jobforge("tenants", "create", "e2e", env=env).returncode == 0
        done = jobforge("jobs", "request", "autopilot.jobforge.healthcheck", "--tenant", "e2e", "--wait", "--json",
                        env=env)
        assert done.returncode == 0, done.stderr
        answer = json.loads(done.stdout)
        assert answer["result"]["healthy"] is True
        workflow_id = answer["run"]["workflow_id"]

        listed = jobforge("runs", "list", "--tenant", "e2e", "--json", env=env)
        assert [r["workflow_id"] for r in json.loads(listed.stdout)] == [workflow_id]

        # the Temporal UI is up, and visibility filters the run by the JobForgeTenant search attribute
        with urllib.request.urlopen(state.ui_url, timeout=10) as page:
            assert page.status == 200
        # the HTTP ingress is up too, recorded in the state file
        assert state.api_url == f"http://127.0.0.1:{ports['api']}" and state.pids.get("api")
        with urllib.request.urlopen(f"{state.api_url}/healthz", timeout=10) as page:
            assert json.loads(page.read()) == {"status": "ok", "database": "ok"}
        # the console: at /ui of the API, operator sign-in with the token the stack printed and keeps (0600)
        token_file = home / "console-operator-token"
        assert state.console_url == f"{state.api_url}/ui" and token_file.stat().st_mode & 0o777 == 0o600
        token = token_file.read_text().strip()
        assert f"operator token: {token}" in log.read_text()
        with httpx.Client(base_url=state.api_url) as browser:
            form = browser.get("/ui/login")
            login_csrf = re.search(r'name="login_csrf" value="([^"]+)"', form.text)
            assert form.status_code == 200 and login_csrf
            signed = browser.post("/ui/login", data={"login_csrf": login_csrf[1], "operator_token": token})
            assert signed.status_code == 303 and signed.headers["location"] == "/ui/tenants"
            runs = browser.get("/ui/t/e2e/runs")
            assert runs.status_code == 200 and answer["run"]["run_id"][:13] in runs.text
            run_page = browser.get(f"/ui/t/e2e/runs/{answer['run']['run_id']}")
            assert f'href="{state.ui_url}/namespaces/default/workflows/' in run_page.text  # the Temporal UI link
        temporal = str(BIN / "temporal")
        seen = subprocess.run([temporal, "workflow", "list", "--address", state.temporal_address,
                               "--query", "JobForgeTenant='e2e'", "-o", "json"],
                              capture_output=True, text=True, timeout=30, check=True)
        assert workflow_id in seen.stdout

        # a fleet-wide flag override, seen by `jobforge flags`
        assert jobforge("flags", "set", "REPLAY_PACK_ENABLED", "on", env=env).returncode == 0
        flags = {f["name"]: f for f in json.loads(jobforge("flags", "--json", env=env).stdout)}
        assert flags["REPLAY_PACK_ENABLED"] == {"name": "REPLAY_PACK_ENABLED", "enabled": True, "source": "store"}
        assert flags["JOBFORGE_AUTOPILOT_JOBS_ENABLED"]["source"] == "env"
        assert flags["JOBFORGE_EVENTS_ENABLED"] == {"name": "JOBFORGE_EVENTS_ENABLED", "enabled": False,
                                                    "source": "default"}

        # events: a dry-run trigger, an event submitted and shown routed by `jobforge events list`
        for flag in ("JOBFORGE_EVENTS_ENABLED", "JOBFORGE_TRIGGERS_ENABLED"):
            assert jobforge("flags", "set", flag, "on", env=env).returncode == 0
        made = jobforge("triggers", "create", "--tenant", "e2e", "--name", "on-order", "--event", "order.*",
                        "--template", "autopilot.jobforge.healthcheck", "--dry-run", env=env)
        assert made.returncode == 0, made.stderr
        sent = jobforge("events", "submit", "--tenant", "e2e", "--type", "order.paid", "--payload", '{"n": 1}',
                        "--event-id", "o-1", "--wait", "--json", env=env)
        assert sent.returncode == 0, sent.stderr
        answer = json.loads(sent.stdout)
        assert not answer["receipt"]["duplicate"]
        assert [(f["trigger_name"], f["verdict"]) for f in answer["routing"]["fires"]] == [("on-order", "dry_run")]
        [event] = json.loads(jobforge("events", "list", "--tenant", "e2e", "--json", env=env).stdout)
        assert event["routing"] == answer["routing"] and event["routed_at"]

        # a second stack on a busy port is refused with a clear error naming the port
        busy = jobforge("dev", "--temporal-port", str(ports["temporal"]), "--ui-port", str(free_port()),
                        "--pg-port", str(free_port()), env=env_with({"JOBFORGE_HOME": str(stack_tmp_path / "other")}))
        assert busy.returncode == 2
        assert str(ports["temporal"]) in busy.stderr and "in use" in busy.stderr
    finally:
        stop_dev(proc, log)
    assert not (home / "state.json").exists()
    # every process of the stack is gone (ports may be reused at once by parallel tests, pids are ours)
    children = dict(state.pids)
    pg_pid = int((home / "pgdata" / "postmaster.pid").read_text().split()[0]) \
        if (home / "pgdata" / "postmaster.pid").exists() else None
    for name, pid in [*children.items(), ("postgres", pg_pid)]:
        assert pid is None or not pid_alive(pid), f"{name} (pid {pid}) still runs after stop"

    # restart: the run record (PostgreSQL) and the workflow history (Temporal SQLite) are still there
    proc = start_dev(env, ports, log)
    try:
        wait_for(lambda: StackState.read(home / "state.json") is not None or proc.poll() is not None, 60,
                 "the state file after restart")
        shown = jobforge("runs", "show", workflow_id, "--json", env=env)
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["status"] == "succeeded"
        described = subprocess.run([str(BIN / "temporal"), "workflow", "describe", "--address",
                                    f"127.0.0.1:{ports['temporal']}", "-w", workflow_id, "-o", "json"],
                                   capture_output=True, text=True, timeout=30, check=False)
        assert described.returncode == 0, described.stderr
        flags = {f["name"]: f for f in json.loads(jobforge("flags", "--json", env=env).stdout)}
        assert flags["REPLAY_PACK_ENABLED"]["source"] == "store"
        restarted = StackState.read(home / "state.json")
        assert restarted is not None
    finally:
        stop_dev(proc, log, signal.SIGTERM)  # a supervisor's SIGTERM stops it as cleanly as Ctrl-C
    postmaster = home / "pgdata" / "postmaster.pid"
    for name, pid in restarted.pids.items():
        assert not pid_alive(pid), f"{name} (pid {pid}) still runs after SIGTERM"
    assert not postmaster.exists() and not (home / "state.json").exists()
