"""A worker whose bubblewrap cannot create namespaces (a container's default security profile, a host
without unprivileged user namespaces) says so in every report, and refuses to run when the sandbox is
required. bubblewrap is replaced by a script that fails the way the real one does there."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError

from activities import verify as verify_activities
from activities.verify import in_container, probe_sandbox
from jobforge.errors import SandboxUnavailable, typed_error
from shared.flags import Flag
from shared.settings import Settings
from shared.verify.models import TEMPLATE_KEY, StepName, StepStatus, Verdict, VerifyReport
from shared.verify.sandbox import probe_failure_reason
from tests.support.tenants import ensure_tenants
from tests.support.verify_repos import explicit_repo
from workers.runtime import Runtime

pytestmark = pytest.mark.integration

#: what bubblewrap 0.8 prints under docker's default seccomp profile / with user namespaces disabled
REFUSED = "bwrap: No permissions to create new namespace, likely because the kernel does not allow non-privileged " \
          "user namespaces. On e.g. debian this can be enabled with 'sysctl kernel.unprivileged_userns_clone=1'.\n"


@pytest.fixture
def unusable_bwrap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A ``bwrap`` first on PATH that answers ``--version`` and refuses to create namespaces; the
    process's probe result is forgotten before and after, so other tests probe the real one."""
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    fake = bin_dir / "bwrap"
    fake.write_text("#!/bin/sh\n"
                    'if [ "$1" = "--version" ]; then echo "bubblewrap 0.8.0"; exit 0; fi\n'
                    f"printf '%s' '{REFUSED}' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    verify_activities._sandbox_probe.clear()
    try:
        yield fake
    finally:
        verify_activities._sandbox_probe.clear()


@pytest.fixture
def verify_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(Flag.AUTOPILOT_JOBS.value, "1")
    monkeypatch.setenv(Flag.VERIFY_PACK.value, "1")


@pytest.fixture
def sandbox_mode() -> str:
    """JOBFORGE_VERIFY_SANDBOX of the test's worker (a test parametrizes it to change it)."""
    return "auto"


@pytest.fixture
def settings(settings: Settings, repos: Path, sandbox_mode: str) -> Settings:
    return settings.replace(verify_allowed_roots=[repos], verify_heartbeat_timeout_seconds=5.0,
                                       verify_kill_grace_seconds=1.0, verify_sandbox=sandbox_mode)


async def _verify(rt: Runtime, inputs: dict[str, Any]) -> VerifyReport:
    await ensure_tenants(rt, "acme")
    handle = await rt.client().request_job("acme", TEMPLATE_KEY, inputs, actor="test")
    report = await rt.client().result(handle)
    assert isinstance(report, VerifyReport)
    return report


def test_probe_reports_refused_user_namespaces(unusable_bwrap: Path) -> None:
    """The probe runs the bwrap on PATH, sees it refuse, and gives bubblewrap's own words and what to allow."""
    info = probe_sandbox("auto")
    assert not info.enabled
    assert "No permissions to create new namespace" in info.reason
    assert "user namespaces" in info.reason
    assert ("docs/operations.md" in info.reason) == in_container()
    assert probe_sandbox("auto") is info, "probed once per process"
    assert probe_sandbox("off").reason.startswith("turned off")


def test_a_result_for_another_bwrap_is_not_reused(unusable_bwrap: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A probe of another bubblewrap (the worker's background probe of the one PATH named when it started,
    finishing after PATH changed) is kept for that one only: the bwrap PATH names now is probed itself."""
    working = tmp_path / "working-bin"
    working.mkdir()
    (working / "bwrap").write_text('#!/bin/sh\nif [ "$1" = "--version" ]; then echo "bubblewrap 0.11.0"; fi\nexit 0\n')
    (working / "bwrap").chmod(0o755)
    path = os.environ["PATH"]
    monkeypatch.setenv("PATH", f"{working}{os.pathsep}{path}")
    assert probe_sandbox("auto").enabled  # the probe the worker made of the bwrap it started with
    monkeypatch.setenv("PATH", path)  # the unusable one is first again
    info = probe_sandbox("auto")
    assert not info.enabled and "No permissions to create new namespace" in info.reason
    assert verify_activities._sandbox_probe[str(working / "bwrap")].enabled
    assert verify_activities._sandbox_probe[str(unusable_bwrap)] is info


def test_failure_reason_names_what_to_allow() -> None:
    """Inside a container the reason points at the operations guide; on a host, at the kernel setting;
    any other failure is quoted as it is."""
    in_box = probe_failure_reason(REFUSED, in_container=True)
    on_host = probe_failure_reason(REFUSED, in_container=False)
    assert "this container" in in_box and "Sandboxing verify steps" in in_box
    assert "kernel.unprivileged_userns_clone=1" in on_host and "container" not in on_host
    other = probe_failure_reason("bwrap: Can't mount proc on /newroot/proc: Device or resource busy\n", False)
    assert other.startswith("bubblewrap does not work here: bwrap: Can't mount proc")
    assert probe_failure_reason("", False) == "bubblewrap does not work here: no message"


async def test_every_report_says_steps_ran_unsandboxed(runtime: Runtime, worker: None, verify_on: None,
                                                      repos: Path, unusable_bwrap: Path) -> None:
    """With JOBFORGE_VERIFY_SANDBOX=auto the steps still run, and the report and each step's log say why
    they were not sandboxed."""
    repo = explicit_repo(repos, "unboxed", {"test": "echo ran"})
    report = await _verify(runtime, {"repo_path": str(repo)})
    assert report.verdict is Verdict.PASSED
    assert report.step(StepName.TEST).status is StepStatus.PASSED
    assert not report.sandbox.enabled
    assert "user namespaces" in report.sandbox.reason and "No permissions" in report.sandbox.reason
    ref = report.step(StepName.TEST).log
    assert ref is not None
    header = await asyncio.to_thread(Path(ref.location).read_text)
    assert "# sandbox: none (bubblewrap cannot create user namespaces" in header, header[:400]


@pytest.mark.parametrize("sandbox_mode", ["required"])
async def test_required_sandbox_refuses_to_run(runtime: Runtime, worker: None, verify_on: None, repos: Path,
                                               unusable_bwrap: Path) -> None:
    """With JOBFORGE_VERIFY_SANDBOX=required a run on such a worker fails with SandboxUnavailable naming the cause."""
    repo = explicit_repo(repos, "must-box", {"test": "echo never"})
    await ensure_tenants(runtime, "acme")
    handle = await runtime.client().request_job("acme", TEMPLATE_KEY, {"repo_path": str(repo)}, actor="test")
    assert runtime.temporal is not None
    with pytest.raises(WorkflowFailureError) as info:
        await runtime.temporal.get_workflow_handle(handle.workflow_id).result()
    error = typed_error(info.value)
    assert isinstance(error, SandboxUnavailable), error
    assert "JOBFORGE_VERIFY_SANDBOX=required" in str(error) and "user namespaces" in str(error)
