"""`jobforge verify` and the verify pack's worker processes, as a user runs them."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from shared.flags import Flag
from shared.settings import Settings
from shared.verify.models import TEMPLATE_KEY, StepName, StepStatus, VerifyReport
from tests.support.procs import ROOT, env_with, jobforge
from tests.support.tenants import ensure_tenants
from tests.support.verify_repos import explicit_repo, node_repo, write_files
from workers.runtime import Runtime, open_runtime

pytestmark = pytest.mark.e2e

FLAGS_ON = {Flag.AUTOPILOT_JOBS.value: "1", Flag.VERIFY_PACK.value: "1"}


@pytest.fixture
def settings(settings: Settings, repos: Path) -> Settings:
    return settings.replace(verify_allowed_roots=[repos], verify_kill_grace_seconds=1.0)


def cli_env(settings: Settings) -> dict[str, str]:
    """A user's shell pointed at the test's services (so no embedded stack is started)."""
    return env_with({
        "JOBFORGE_TEMPORAL_ADDRESS": settings.temporal_address,
        "JOBFORGE_DATABASE_URL": settings.database_url_value() or "",
        "JOBFORGE_TASK_QUEUE": settings.task_queue, "JOBFORGE_HOME": str(settings.home), **FLAGS_ON,
    })


async def test_cli_exit_codes_json_and_plain_progress(settings: Settings, runtime: Runtime, worker: None,
                                                      repos: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pass exits 0 with the report as the only stdout; fail exits 1; a refused path, bad usage or a repository
    that could not be judged (verdict error) exits 2."""
    await ensure_tenants(runtime, "demo")  # verify's default tenant, which `jobforge dev` makes
    for flag, value in FLAGS_ON.items():
        monkeypatch.setenv(flag, value)
    env = cli_env(settings)
    good = node_repo(repos, "good", {"lint": "node -e 1", "test": "node -e \"console.log('ok')\""})
    explicit_repo(repos, "bad", {"lint": "echo 'bad style'; exit 1", "test": "true"})

    passed = await asyncio.to_thread(jobforge, "verify", str(good), "--json", env=env)
    assert passed.returncode == 0, passed.stderr
    report = VerifyReport.model_validate(json.loads(passed.stdout))
    assert report.passed and report.step(StepName.TEST).status is StepStatus.PASSED

    failed = await asyncio.to_thread(jobforge, "verify", "bad", env=env, cwd=repos)
    assert failed.returncode == 1, failed.stderr
    assert "[verify] lint: failed" in failed.stderr and "[verify] test: passed" in failed.stderr
    assert "FAILED" in failed.stdout and "bad style" in failed.stdout and "logs/lint.log" in failed.stdout

    refused = await asyncio.to_thread(jobforge, "verify", str(ROOT), env=env)
    assert refused.returncode == 2 and "repo_path_refused" in refused.stderr, refused.stderr
    assert f"JOBFORGE_VERIFY_ALLOWED_ROOTS={ROOT.parent} jobforge dev" in refused.stderr  # how to allow it
    usage = await asyncio.to_thread(jobforge, "verify", str(good), "--ref", "main", env=env)
    assert usage.returncode == 2 and "--ref" in usage.stderr
    off = await asyncio.to_thread(jobforge, "verify", str(good), env={**env, Flag.VERIFY_PACK.value: "0"})
    assert off.returncode == 2 and "VERIFY_PACK_ENABLED" in off.stderr
    # a tool the worker does not have: the repository could not be judged, which is not its failure
    lacking = write_files(repos / "lacking", {".jobforge/verify.toml": 'test = ["no-such-tool-4711", "--all"]\n'})
    error = await asyncio.to_thread(jobforge, "verify", str(lacking), env=env)
    assert error.returncode == 2, (error.stdout, error.stderr)
    assert "verify_incomplete" in error.stderr and "no-such-tool-4711 is not installed" in error.stderr
    assert "ERROR" in error.stdout


def start_worker(settings: Settings, repos: Path, log: Path, sandbox: str = "auto") -> subprocess.Popen[bytes]:
    env = env_with({
        "JOBFORGE_TEMPORAL_ADDRESS": settings.temporal_address,
        "JOBFORGE_DATABASE_URL": settings.database_url_value() or "",
        "JOBFORGE_TASK_QUEUE": settings.task_queue, "JOBFORGE_HOME": str(settings.home),
        "JOBFORGE_VERIFY_ALLOWED_ROOTS": str(repos), "JOBFORGE_VERIFY_HEARTBEAT_TIMEOUT_SECONDS": "2",
        "JOBFORGE_VERIFY_KILL_GRACE_SECONDS": "1", "JOBFORGE_WORKER_GRACEFUL_SHUTDOWN_SECONDS": "0",
        "JOBFORGE_LOG_FORMAT": "json", "JOBFORGE_VERIFY_SANDBOX": sandbox, **FLAGS_ON,
    })
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "workers.worker"], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


async def test_worker_killed_mid_test_resumes_without_rerunning_finished_steps(
        settings: Settings, repos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGKILL of the worker during `test`: a new worker finishes the run; lint/typecheck/build are not rerun."""
    for flag, value in FLAGS_ON.items():
        monkeypatch.setenv(flag, value)
    runs = tmp_path / "runs.log"  # outside the run's copy of the repository, which goes with the run
    repo = explicit_repo(repos, "resume", {
        "lint": f"echo lint >> {runs}", "typecheck": f"echo typecheck >> {runs}", "build": f"echo build >> {runs}",
        "test": f"echo test-start >> {runs}; sleep 3; echo test-end >> {runs}",
    }, order=[["lint", "typecheck"], ["build"], ["test"]])
    log = tmp_path / "worker.log"
    first = start_worker(settings, repos, log, sandbox="off")  # the steps write their count outside the repository
    second: subprocess.Popen[bytes] | None = None
    try:
        async with open_runtime(settings) as rt:
            await rt.gate.tenants.ensure_tenant("acme")
            client = rt.client()
            handle = await client.request_job("acme", TEMPLATE_KEY, {"repo_path": str(repo)},
                                              idempotency_key=f"resume-{uuid.uuid4().hex}")
            deadline = time.monotonic() + 60
            while "test-start" not in (runs.read_text() if runs.exists() else ""):
                assert time.monotonic() < deadline and first.poll() is None, log.read_text()[-3000:]
                await asyncio.sleep(0.05)
            first.send_signal(signal.SIGKILL)
            await asyncio.to_thread(first.wait, 10)
            second = start_worker(settings, repos, log, sandbox="off")
            report = await asyncio.wait_for(client.result(handle), 90)
        assert isinstance(report, VerifyReport) and report.passed, report
        lines = runs.read_text().split()
        assert lines.count("lint") == 1 and lines.count("typecheck") == 1 and lines.count("build") == 1, lines
        assert lines.count("test-start") == 2 and lines.count("test-end") == 1, lines
        assert report.step(StepName.TEST).attempt == 2
        assert report.step(StepName.BUILD).attempt == 1
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.to_thread(proc.wait, 20)
                except subprocess.TimeoutExpired:
                    proc.kill()


def test_cli_brings_up_the_embedded_stack_for_the_command(stack_tmp_path: Path) -> None:
    """With no stack running and none configured, `jobforge verify` starts the embedded one and stops it after."""
    home = stack_tmp_path / "home"
    env = env_with({"JOBFORGE_HOME": str(home), **FLAGS_ON})
    result = jobforge("verify", "examples/node-sample", "--json", env=env, cwd=ROOT, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    report = VerifyReport.model_validate(json.loads(result.stdout))
    assert report.passed and report.toolchain.value == "node"
    assert report.step(StepName.TYPECHECK).status is StepStatus.SKIPPED
    assert not (home / "state.json").exists()  # the stack went away with the command
    assert all(Path(ref.location).is_relative_to(home.resolve()) for ref in report.artifacts)
