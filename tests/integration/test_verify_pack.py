"""The verify pack end to end: real Temporal, real PostgreSQL, real processes, generated repositories."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from temporalio.client import WorkflowFailureError

from activities.verify import probe_sandbox
from jobforge.errors import FeatureDisabled, RepoPathRefused, UnstorableText, typed_error
from jobforge.models import RunHandleInfo, RunStatus
from shared.flags import Flag
from shared.settings import Settings
from shared.verify.models import TEMPLATE_KEY, StepName, StepStatus, Verdict, VerifyProgress, VerifyReport
from tests.support.tenants import ensure_tenants
from tests.support.verify_repos import (
    FAKE_AWS_KEY,
    FAKE_GITHUB_TOKEN,
    explicit_repo,
    git_init,
    node_repo,
    python_repo,
)
from workers.runtime import Runtime

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
async def _tenants(runtime: Runtime) -> None:
    """The tenants these tests name exist."""
    await ensure_tenants(runtime, "acme")

HERE = Path(__file__).resolve().parent
SHARED_CACHE = Path(os.environ.get("JOBFORGE_TEST_VERIFY_CACHE", "/tmp/jobforge-test-verify-cache"))


@pytest.fixture
def settings(settings: Settings, repos: Path) -> Settings:
    """The session's services, repositories allowed under ``repos``, fast heartbeats and kills."""
    return settings.replace(
        verify_allowed_roots=[repos], verify_heartbeat_timeout_seconds=5.0, verify_kill_grace_seconds=1.0,
        verify_cache_dir=SHARED_CACHE,
    )


@pytest.fixture
def verify_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(Flag.AUTOPILOT_JOBS.value, "1")
    monkeypatch.setenv(Flag.VERIFY_PACK.value, "1")


async def request(rt: Runtime, inputs: dict[str, Any], tenant: str = "acme") -> RunHandleInfo:
    return await rt.client().request_job(tenant, TEMPLATE_KEY, inputs, actor="test")


async def verify(rt: Runtime, inputs: dict[str, Any], tenant: str = "acme") -> VerifyReport:
    report = await rt.client().result(await request(rt, inputs, tenant))
    assert isinstance(report, VerifyReport)
    return report


def log_text(report: VerifyReport, step: StepName) -> str:
    ref = report.step(step).log
    assert ref is not None, report.step(step)
    data = Path(ref.location).read_bytes()
    assert hashlib.sha256(data).hexdigest() == ref.sha256 and len(data) == ref.size
    return data.decode()


def running(token: str) -> list[psutil.Process]:
    """Live processes with ``token`` as a whole argument, e.g. ``sleep 4172`` (pids inside a sandbox mean
    nothing out here; a substring would also match parallel tests' random ports like ``--port 41725``)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = proc.info["cmdline"] or []
        if token in cmdline and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(proc)
    return found


async def gone(token: str, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while running(token):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def test_node_repo_passes_and_reports_skipped_steps(runtime: Runtime, worker: None, verify_on: None,
                                                          repos: Path) -> None:
    """A Node repo's scripts run as steps, a missing typecheck is skipped with its reason, logs are artifacts."""
    repo = node_repo(repos, "web", {"lint": "node -e \"console.log('lint ok')\"", "build": "node -e \"1\"",
                                    "test": "node -e \"console.log('tests ok')\""})
    report = await verify(runtime, {"repo_path": str(repo)})
    assert report.verdict is Verdict.PASSED and report.passed, report
    assert report.toolchain.value == "node" and not report.cached
    statuses = {r.name: r.status for r in report.steps}
    assert statuses == {StepName.INSTALL: StepStatus.SKIPPED, StepName.LINT: StepStatus.PASSED,
                        StepName.TYPECHECK: StepStatus.SKIPPED, StepName.BUILD: StepStatus.PASSED,
                        StepName.TEST: StepStatus.PASSED}
    assert "tsconfig" in report.step(StepName.TYPECHECK).reason
    assert "no dependencies" in report.step(StepName.INSTALL).reason
    assert report.step(StepName.LINT).command == "npm run lint" and report.step(StepName.LINT).exit_code == 0
    assert "tests ok" in log_text(report, StepName.TEST)
    assert report.fingerprint.startswith("sha256:")
    assert report.manifest is not None and report.manifest.status == "skipped"
    assert "JOBFORGE_MANIFESTS_ENABLED" in report.manifest.reason
    names = {r.name for r in await runtime.store.list_artifacts("acme", report.run_id)}
    assert names == {"logs/lint.log", "logs/build.log", "logs/test.log", "report.json"}
    report_file = next(a for a in report.artifacts if a.name == "report.json")
    assert await asyncio.to_thread(os.path.isfile, report_file.location)
    assert f"/acme/sha256/{report_file.sha256[:2]}/" in report_file.location
    record = await runtime.store.get_run(report.run_id)
    assert record.status is RunStatus.SUCCEEDED and record.summary["passed"] is True


async def test_failing_steps_fail_the_verdict_and_the_others_still_report(runtime: Runtime, worker: None,
                                                                          verify_on: None, repos: Path) -> None:
    """Failing lint and tests fail the verdict; typecheck and build still run and report."""
    repo = explicit_repo(repos, "mixed", {
        "lint": "echo 'E501 line too long'; exit 3", "typecheck": "echo types fine",
        "build": "echo built", "test": "echo '1 failed'; exit 1",
    })
    report = await verify(runtime, {"repo_path": str(repo)})
    assert report.verdict is Verdict.FAILED and not report.passed
    assert report.plan_source == ".jobforge/verify.toml"
    by = {r.name: r for r in report.steps}
    assert (by[StepName.LINT].status, by[StepName.LINT].exit_code) == (StepStatus.FAILED, 3)
    assert by[StepName.TYPECHECK].status is StepStatus.PASSED
    assert by[StepName.BUILD].status is StepStatus.PASSED
    assert (by[StepName.TEST].status, by[StepName.TEST].exit_code) == (StepStatus.FAILED, 1)
    assert "E501 line too long" in by[StepName.LINT].tail
    record = await runtime.store.get_run(report.run_id)
    assert record.summary["verdict"] == "failed"


async def test_a_check_the_machine_failed_runs_once_more_and_twice_is_an_error(runtime: Runtime, worker: None,
                                                                              verify_on: None, repos: Path) -> None:
    """A check whose output says the machine failed it (mypy's worker pool not starting in time on a loaded
    worker) runs once more: passing then, it passes, saying why it ran twice; failing that way again, it is an
    error (exit 2), not the repository's failure. Other failures are not run again."""
    pool = "Failed to establish connection with worker: No status file found"
    repo = explicit_repo(repos, "flaky", {
        "typecheck": f"if [ -e .ran ]; then echo typed; else touch .ran; echo '{pool}'; exit 2; fi",
        "test": "echo 1 >> runs.txt; echo \"run $(wc -l < runs.txt)\"; exit 1",
    })
    report = await verify(runtime, {"repo_path": str(repo)})
    typecheck, test = report.step(StepName.TYPECHECK), report.step(StepName.TEST)
    assert typecheck.status is StepStatus.PASSED and "run once more" in typecheck.reason, typecheck
    assert test.status is StepStatus.FAILED and "run 1" in test.tail and "run 2" not in test.tail
    broken = explicit_repo(repos, "pool", {"typecheck": f"echo '{pool}'; exit 2", "test": "true"})
    again = await verify(runtime, {"repo_path": str(broken)})
    assert again.step(StepName.TYPECHECK).status is StepStatus.ERROR and again.verdict is Verdict.ERROR
    assert "the machine failed this check" in again.error and pool in again.error


async def test_fast_pack_and_selected_steps(runtime: Runtime, worker: None, verify_on: None, repos: Path) -> None:
    """The fast pack leaves test out; options.steps narrows further; both say why a step was skipped."""
    repo = explicit_repo(repos, "fast", {"lint": "true", "typecheck": "true", "build": "true", "test": "false"})
    fast = await verify(runtime, {"repo_path": str(repo), "pack": "fast"})
    assert fast.passed and fast.step(StepName.TEST).status is StepStatus.SKIPPED
    assert "fast pack" in fast.step(StepName.TEST).reason
    only = await verify(runtime, {"repo_path": str(repo), "options": {"steps": ["lint"]}})
    assert only.passed and only.step(StepName.BUILD).reason == "not selected (options.steps)"


async def test_hanging_test_times_out_and_its_group_is_killed(runtime: Runtime, worker: None, verify_on: None,
                                                              repos: Path) -> None:
    """A test that hangs (and ignores SIGTERM) is timed out: SIGTERM, then SIGKILL of the whole group."""
    repo = explicit_repo(repos, "hang", {
        "lint": "true",
        "test": "trap '' TERM; sleep 4171 & wait",
    })
    started = time.monotonic()
    report = await verify(runtime, {"repo_path": str(repo), "options": {"timeout_minutes": 0.03}})
    elapsed = time.monotonic() - started
    test = report.step(StepName.TEST)
    assert test.status is StepStatus.TIMED_OUT and test.exit_code is None, test
    assert report.verdict is Verdict.FAILED and report.step(StepName.LINT).status is StepStatus.PASSED
    assert elapsed < 20, elapsed
    assert await gone("4171"), "the hanging test's sleeper survived the timeout"
    assert "timed out" in test.reason


async def test_grandchild_holding_the_pipe_does_not_hang_the_step(runtime: Runtime, worker: None, verify_on: None,
                                                                  repos: Path) -> None:
    """A step whose background grandchildren keep stdout open finishes at once; its group is killed."""
    repo = explicit_repo(repos, "pipe", {
        "build": "sleep 4172 & setsid sleep 4173 & sleep 0.3; echo built",
    })
    started = time.monotonic()
    report = await verify(runtime, {"repo_path": str(repo)})
    elapsed = time.monotonic() - started
    build = report.step(StepName.BUILD)
    assert build.status is StepStatus.PASSED and build.duration_seconds < 6, build
    assert elapsed < 20
    assert await gone("4172"), "the background child in the step's group survived"
    try:
        if report.sandbox.enabled:
            assert await gone("4173"), "the sandbox's PID namespace should die with the step"
        else:
            assert "kept the output open" in build.reason or await gone("4173")
    finally:
        for proc in running("4173"):
            proc.kill()
    assert "built" in log_text(report, StepName.BUILD)


async def test_secret_printed_by_a_script_is_redacted_in_the_log(runtime: Runtime, worker: None, verify_on: None,
                                                                 repos: Path) -> None:
    """Tokens and private keys a script prints come out redacted in the log artifact and the report."""
    script = (f"echo 'token={FAKE_GITHUB_TOKEN}'; echo 'aws {FAKE_AWS_KEY} here'; "
              "printf -- '-----BEGIN RSA PRIVATE KEY-----\\nMIIEsecretkeymaterial\\n-----END RSA PRIVATE KEY-----\\n'; "
              "exit 1")
    repo = explicit_repo(repos, "leaky", {"test": script})
    report = await verify(runtime, {"repo_path": str(repo)})
    text = log_text(report, StepName.TEST)
    for secret in (FAKE_GITHUB_TOKEN, FAKE_AWS_KEY, "MIIEsecretkeymaterial"):
        assert secret not in text
        assert all(secret not in line for line in report.step(StepName.TEST).tail)
    assert "token=[REDACTED]" in text and "[REDACTED PRIVATE KEY]" in text


async def test_steps_get_an_allowlisted_environment(runtime: Runtime, worker: None, verify_on: None, repos: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """No JobForge setting or other worker secret reaches a repository's scripts."""
    monkeypatch.setenv("JOBFORGE_SECRET_FOR_TEST", "do-not-leak")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "do-not-leak")
    repo = explicit_repo(repos, "envcheck", {"test": "env > seen.env; cat seen.env"})
    report = await verify(runtime, {"repo_path": str(repo)})
    assert report.passed
    assert not (repo / "seen.env").exists(), "a step wrote into the checkout instead of the run's copy"
    seen = dict(line.split("=", 1) for line in log_text(report, StepName.TEST).splitlines()
                if "=" in line and not line.startswith("#"))
    assert "do-not-leak" not in seen.values()
    assert not any(name.startswith("JOBFORGE_") for name in seen)
    assert Flag.VERIFY_PACK.value not in seen and seen["CI"] == "true"
    assert "NO_COLOR" not in seen and seen.get("TERM", "") != "dumb"


async def test_paths_outside_the_allowed_roots_are_refused(runtime: Runtime, worker: None, verify_on: None,
                                                           repos: Path, tmp_path: Path) -> None:
    """A symlink escaping the root, '..', a file and a missing path are refused with a typed error."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (repos / "escape").symlink_to(outside)
    (repos / "file.txt").write_text("x")
    cases = {str(repos / "escape"): "outside the directories the workers may verify",
             f"{repos}/../outside": "traversal", str(repos / "file.txt"): "not a directory",
             str(repos / "missing"): "does not exist"}
    for path, words in cases.items():
        handle = await request(runtime, {"repo_path": path})
        with pytest.raises(RepoPathRefused) as info:
            await runtime.client().result(handle)
        assert words in info.value.message, (path, info.value.message)
        record = await runtime.store.get_run(handle.run_id)
        assert record.status is RunStatus.FAILED and record.summary.get("error_type") == "repo_path_refused"
    with pytest.raises(UnstorableText):
        await request(runtime, {"repo_path": str(repos) + "\x00/x"})


async def test_flags_gate_the_template(runtime: Runtime, worker: None, repos: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Without VERIFY_PACK_ENABLED (or the autopilot flag) the request is FeatureDisabled naming the flag."""
    monkeypatch.setenv(Flag.AUTOPILOT_JOBS.value, "1")
    with pytest.raises(FeatureDisabled) as info:
        await request(runtime, {"repo_path": str(repos)})
    assert info.value.flag == "VERIFY_PACK_ENABLED"
    monkeypatch.delenv(Flag.AUTOPILOT_JOBS.value)
    monkeypatch.setenv(Flag.VERIFY_PACK.value, "1")
    with pytest.raises(FeatureDisabled) as info:
        await request(runtime, {"repo_path": str(repos)})
    assert info.value.flag == "JOBFORGE_AUTOPILOT_JOBS_ENABLED"


async def test_cache_hit_and_manifest(runtime: Runtime, worker: None, verify_on: None, repos: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A passed fingerprint is answered from the cache; no_cache and a code change run again; manifests list files."""
    monkeypatch.setenv(Flag.MANIFESTS.value, "1")
    repo = explicit_repo(repos, "cached", {"lint": "echo linted", "test": "true"})
    git_init(repo)
    first = await verify(runtime, {"repo_path": str(repo)})
    assert first.passed and not first.cached
    second = await verify(runtime, {"repo_path": str(repo)})
    assert second.cached and second.passed and second.cached_from_run_id == first.run_id
    assert second.fingerprint == first.fingerprint and second.sandbox == first.sandbox
    assert second.step(StepName.LINT).log == first.step(StepName.LINT).log  # the source run's log, not a new run
    forced = await verify(runtime, {"repo_path": str(repo), "options": {"no_cache": True}})
    assert not forced.cached and forced.fingerprint == first.fingerprint
    (repo / "new_file.py").write_text("x = 1\n")  # an untracked file changes the code fingerprint
    changed = await verify(runtime, {"repo_path": str(repo)})
    assert not changed.cached and changed.fingerprint != first.fingerprint
    assert first.manifest is not None and first.manifest.status == "written" and first.manifest.artifact
    manifest = await asyncio.to_thread(Path(first.manifest.artifact.location).read_text)
    for ref in first.artifacts:
        if ref.name != "manifest.json":
            assert ref.sha256 in manifest and ref.name in manifest
    assert '"run_status":"succeeded"' in manifest and '"verdict":"passed"' in manifest


async def test_file_url_is_cloned_into_the_run_workspace(runtime: Runtime, worker: None, verify_on: None,
                                                         repos: Path, settings: Settings) -> None:
    """A file:// URL is cloned at the ref into a per-run workspace, verified, and the workspace removed."""
    origin = explicit_repo(repos, "origin", {"lint": "test -f marker", "test": "git log -1 --format=%s"},
                           extra={"marker": "m"})
    git_init(origin)
    report = await verify(runtime, {"repo_url": f"file://{origin}", "ref": "main"})
    assert report.passed, report
    assert report.source == f"file://{origin}@main"
    assert "initial" in log_text(report, StepName.TEST)
    workspace = settings.home.resolve() / "verify" / "runs" / "acme" / report.run_id
    assert not workspace.exists()


async def test_cancelling_the_run_kills_the_running_step(runtime: Runtime, worker: None, verify_on: None,
                                                         repos: Path) -> None:
    """Cancelling a run mid-step kills the step's process group before the run is recorded cancelled."""
    repo = explicit_repo(repos, "long", {"test": "sleep 4174"})
    handle = await request(runtime, {"repo_path": str(repo)})
    for _ in range(200):
        if running("4174"):
            break
        await asyncio.sleep(0.05)
    assert running("4174")
    assert runtime.temporal is not None
    wf = runtime.temporal.get_workflow_handle(handle.workflow_id)
    progress = await wf.query("progress", result_type=VerifyProgress)
    assert any(s.name is StepName.TEST and s.status is StepStatus.RUNNING for s in progress.steps)
    await wf.cancel()
    with pytest.raises(WorkflowFailureError):
        await wf.result()
    assert await gone("4174", within=0.5), "the step's process group outlived the cancellation"
    for _ in range(50):
        record = await runtime.store.get_run(handle.run_id)
        if record.status is RunStatus.CANCELLED:
            break
        await asyncio.sleep(0.1)
    assert record.status is RunStatus.CANCELLED


async def test_python_repo_is_detected_installed_and_verified(runtime: Runtime, worker: None, verify_on: None,
                                                              repos: Path) -> None:
    """A Python repo gets a venv with its tools; ruff, mypy, build and pytest run; a lint error fails lint only."""
    repo = python_repo(repos, "pyproj")
    report = await verify(runtime, {"repo_path": str(repo)})
    assert report.passed, [(s.name, s.status, s.reason, s.tail[-3:]) for s in report.steps]
    commands = {r.name: r.command for r in report.steps}
    assert commands[StepName.LINT] == "ruff check ." and commands[StepName.TYPECHECK] == "mypy"
    assert commands[StepName.TEST] == "python -m pytest" and "build --no-isolation" in commands[StepName.BUILD]
    assert report.step(StepName.INSTALL).status is StepStatus.PASSED
    assert "1 passed" in log_text(report, StepName.TEST)
    (repo / "fixture_pkg" / "__init__.py").write_text("import os\n\ndef double(x: int) -> int:\n    return 2 * x\n")
    broken = await verify(runtime, {"repo_path": str(repo)})
    assert broken.step(StepName.INSTALL).status is StepStatus.PASSED  # each run builds its own, from the warm cache
    assert not {".venv", "build", ".mypy_cache", ".ruff_cache"} & {p.name for p in repo.iterdir()}, \
        "the checkout was written to"
    assert broken.step(StepName.LINT).status is StepStatus.FAILED
    assert "F401" in log_text(broken, StepName.LINT)
    assert broken.step(StepName.TEST).status is StepStatus.PASSED
    assert broken.verdict is Verdict.FAILED


async def test_raw_start_of_a_refused_path_is_recorded(runtime: Runtime, worker: None, verify_on: None,
                                                       repos: Path) -> None:
    """The typed refusal survives Temporal: typed_error maps it back to RepoPathRefused."""
    handle = await request(runtime, {"repo_path": "/etc"})
    assert runtime.temporal is not None
    with pytest.raises(WorkflowFailureError) as info:
        await runtime.temporal.get_workflow_handle(handle.workflow_id).result()
    assert isinstance(typed_error(info.value), RepoPathRefused)


async def test_sandbox_hides_jobforge_home_blocks_writes_and_network(runtime: Runtime, worker: None, verify_on: None,
                                                                    repos: Path, settings: Settings) -> None:
    """Under bubblewrap a step sees no JobForge home, cannot write outside the repo, and has no network."""
    if not probe_sandbox(settings.verify_sandbox).enabled:
        pytest.skip("bubblewrap does not work on this machine")
    settings.home.mkdir(parents=True, exist_ok=True)
    (settings.home / "state-secret.txt").write_text("s")
    probe = HERE / f".sandbox-probe-{os.getpid()}"
    script = (f"test -e {settings.home.resolve()}/state-secret.txt && echo SEES-HOME || echo NO-HOME; "
              f"(echo x > {probe}) 2>/dev/null && echo WROTE || echo NO-WRITE; "
              "(bash -c 'echo > /dev/tcp/127.0.0.1/5432') 2>/dev/null && echo NET || echo NO-NET; "
              "echo ok > inside.txt")
    repo = explicit_repo(repos, "boxed", {"test": script})
    try:
        report = await verify(runtime, {"repo_path": str(repo)})
        assert report.sandbox.enabled and "bubblewrap" in report.sandbox.tool
        text = log_text(report, StepName.TEST)
        assert "NO-HOME" in text and "NO-WRITE" in text and "NO-NET" in text, text
        assert not probe.exists() and not (repo / "inside.txt").exists()  # written in the run's copy only
    finally:
        probe.unlink(missing_ok=True)
