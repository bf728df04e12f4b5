"""`jobforge-worker` as a process: graceful stop on SIGTERM, and runs survive a worker's departure."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from jobforge.models import RunStatus
from shared.settings import Settings
from tests.support.procs import ROOT, env_with
from workers.runtime import open_runtime
from workers.stack import StackState

pytestmark = pytest.mark.e2e


def start_worker(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = env_with({
        "JOBFORGE_TEMPORAL_ADDRESS": settings.temporal_address,
        "JOBFORGE_DATABASE_URL": settings.database_url_value() or "",
        "JOBFORGE_TASK_QUEUE": settings.task_queue,
        "JOBFORGE_TEMPLATE_MODULES": "tests.support.slow_template",
        "JOBFORGE_WORKER_GRACEFUL_SHUTDOWN_SECONDS": "0.5",
        "JOBFORGE_LOG_FORMAT": "json",
    })
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "workers.worker"], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


async def test_worker_sigterm_mid_run_then_new_worker_completes(settings: Settings, tmp_path: Path) -> None:
    """SIGTERM stops the worker cleanly mid-activity; the run completes once another worker starts."""
    settings = settings.replace(template_modules=["tests.support.slow_template"])
    marker = tmp_path / "marker"
    marker.mkdir()
    log = tmp_path / "worker.log"
    first = start_worker(settings, log)
    try:
        async with open_runtime(settings) as rt:
            await rt.gate.tenants.ensure_tenant("acme")
            client = rt.client()
            handle = await client.request_job("acme", "testing.jobforge.slow",
                                              {"seconds": 2.5, "marker_dir": str(marker)},
                                              idempotency_key=f"slow-{uuid.uuid4().hex}")
            for _ in range(300):
                if (marker / "started").exists():
                    break
                await asyncio.sleep(0.05)
            assert (marker / "started").exists(), log.read_text()
            first.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(first.wait, 20) == 0, log.read_text()
            assert "worker_stopped" in log.read_text()
            assert not (marker / "finished").exists()
            record = await client.get_run(handle.run_id)
            assert record.status is RunStatus.RUNNING

            second = start_worker(settings, log)
            try:
                result = await asyncio.wait_for(client.result(handle), 60)
            finally:
                second.send_signal(signal.SIGTERM)
                await asyncio.to_thread(second.wait, 20)
            assert result.attempts >= 2
            assert (marker / "finished").read_text().split() == [str(result.attempts)]  # type: ignore[attr-defined]
            record = await client.get_run(handle.run_id)
            assert record.status is RunStatus.SUCCEEDED
    finally:
        if first.poll() is None:
            first.kill()


@pytest.mark.parametrize("module", ["workers.worker", "workers.api"])
def test_service_reads_only_its_settings(module: str, tmp_path: Path) -> None:
    """A worker or API started beside a running dev stack's state.json, without JOBFORGE_DATABASE_URL, does
    not adopt that stack: it exits 2 naming the settings it needs."""
    home = tmp_path / ".jobforge"
    home.mkdir()
    # a live pid: the state reads as a running stack to anything that looks at it
    StackState(pid=os.getpid(), temporal_address="127.0.0.1:1", ui_url="", home=str(home),
               database_url="postgresql+psycopg://postgres@127.0.0.1:1/jobforge").write(home / "state.json")
    assert StackState.read(home / "state.json") is not None
    done = subprocess.run([sys.executable, "-m", module], cwd=tmp_path, env=env_with({"JOBFORGE_LOG_FORMAT": "json"}),
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "has no database: set JOBFORGE_DATABASE_URL" in output and "127.0.0.1:1" not in output
