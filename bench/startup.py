"""Startup benchmark: `jobforge dev` launch → first job accepted, cold and warm, and idle RSS.

Baseline measured in the same run: a bare `temporal server start-dev` (same flags, same SQLite file
kind) from launch to its gRPC port accepting connections. Printed ratios are JobForge / baseline.
Target: warm start under 5 s on a 2-core machine.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.settings import Settings
from tests.support.procs import BIN, env_with, free_port
from workers.runtime import open_runtime
from workers.stack import StackState, temporal_dev_command, wait_for_port


def baseline_temporal(home: Path) -> float:
    port = free_port()
    home.mkdir(parents=True, exist_ok=True)
    cmd = temporal_dev_command(home, port, free_port(), "default", headless=True)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        assert wait_for_port(port, 60, proc)
        return time.perf_counter() - start
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


async def first_job(state: StackState) -> None:
    settings = Settings(temporal_address=state.temporal_address, database_url=SecretStr(state.database_url))
    async with open_runtime(settings) as rt:
        await rt.gate.tenants.ensure_tenant("bench")
        await rt.client().request_job("bench", "autopilot.jobforge.healthcheck", {})


def rss_mb(pid: int, with_children: bool = False) -> float:
    proc = psutil.Process(pid)
    procs = [proc, *proc.children(recursive=True)] if with_children else [proc]
    return sum(p.memory_info().rss for p in procs if p.is_running()) / 2**20


def postgres_rss_mb(pgdata: Path) -> float:
    total = 0
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if proc.info.get("name") == "postgres" and str(pgdata) in " ".join(cmdline):
            total += sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)])
    return total / 2**20


def launch(home: Path) -> tuple[float, dict[str, float]]:
    env = env_with({"JOBFORGE_HOME": str(home), "JOBFORGE_AUTOPILOT_JOBS_ENABLED": "1"})
    cmd = [str(BIN / "jobforge"), "dev", "--headless", "--temporal-port", str(free_port()),
           "--pg-port", str(free_port()), "--api-port", str(free_port())]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        state = None
        while state is None:
            if proc.poll() is not None:
                raise SystemExit(f"jobforge dev exited with {proc.returncode}")
            state = StackState.read(home / "state.json")
            time.sleep(0.02)
        asyncio.run(first_job(state))
        elapsed = time.perf_counter() - start
        time.sleep(3)  # let things settle to idle
        rss = {"jobforge dev (supervisor)": rss_mb(proc.pid)}
        for name, pid in state.pids.items():
            rss[name] = rss_mb(pid, with_children=name == "temporal")
        rss["postgres (all backends)"] = postgres_rss_mb(home / "pgdata")
        return elapsed, rss
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)


def main() -> None:
    os.environ["JOBFORGE_AUTOPILOT_JOBS_ENABLED"] = "1"  # the client pre-checks the flag too
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        base = min(baseline_temporal(root / f"baseline{i}") for i in range(2))
        cold, _ = launch(root / "home")
        warm_runs = [launch(root / "home") for _ in range(2)]
        warm = min(t for t, _ in warm_runs)
        rss = warm_runs[-1][1]
        shutil.rmtree(root, ignore_errors=True)
    print(f"baseline: bare temporal dev server to port open   {base:6.2f} s")
    print(f"jobforge dev → first job accepted, cold             {cold:6.2f} s  ({cold / base:.2f}x baseline)")
    print(f"jobforge dev → first job accepted, warm             {warm:6.2f} s  ({warm / base:.2f}x baseline)"
          f"  target < 5 s: {'met' if warm < 5 else 'MISSED'}")
    print("idle RSS:")
    for name, mb in rss.items():
        print(f"  {name:28s} {mb:7.1f} MB")


if __name__ == "__main__":
    main()
