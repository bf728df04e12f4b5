"""Horizontal scale on one machine as a model of many: 1, 2 and 4 ``jobforge-worker`` processes.

Against one Temporal dev server (SQLite file + WAL, started here) and a throwaway PostgreSQL database
on 127.0.0.1:5432, for each worker count k (a fresh task queue each round, so rounds never share
workers) this measures:

1. event → run throughput: N events through ``OperatorClient.submit_event`` (C concurrent; the gate
   runs in this process, as in an API replica), each matching one event trigger whose template is
   ``autopilot.jobforge.healthcheck``; events/s from the first submit until the N-th run succeeded;
2. verify-pack concurrency: V verify runs of a tiny generated Python repository (explicit
   ``.jobforge/verify.toml``: compileall + unittest, ``install`` off, ``no_cache``) started at once;
   runs/minute until the last finished;
3. exactness with k workers deciding concurrently (each must hold exactly, else the bench fails):
   dedupe (D ids submitted 3 times each, concurrently: D admitted, D runs); rate limit (the workers'
   tenant budget is a burst of B then 1/min: B+E fires → exactly B runs, E refused ``rate_limited``);
   cooldown (M events on a trigger with a 1 h cooldown → exactly one fire); every tenant's audit chain
   verifies and holds exactly the entries these decisions imply;
4. with k = 1: the peak RSS of the worker process (its own, children excluded, psutil every 20 ms)
   while it runs 4 verify steps at once (target < 250 MB).

Scaling efficiency = throughput_k / (k · throughput_1). Usage:
``python bench/scale.py [--workers 1,2,4] [--events 200] [--concurrency 20] [--verify-runs 12]``.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import psycopg
from psycopg import sql
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from shared.settings import Secret

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jobforge.models import EventEnvelope, SafetyConfig, TriggerKind, TriggerSpec  # noqa: E402 - as above
from shared.flags import Flag  # noqa: E402 - importable once the checkout is on sys.path
from shared.search_attributes import search_attribute_args  # noqa: E402 - as above
from shared.settings import Settings  # noqa: E402 - as above
from shared.store.migrate import upgrade  # noqa: E402 - as above
from shared.triggers.service import TriggerService  # noqa: E402 - as above
from shared.verify.models import TEMPLATE_KEY as VERIFY  # noqa: E402 - as above
from shared.verify.models import VerifyReport  # noqa: E402 - as above
from workers.runtime import Runtime, open_runtime  # noqa: E402 - as above
from workers.stack import temporal_binary, terminate  # noqa: E402 - as above

PG_ADMIN = os.environ.get("JOBFORGE_TEST_PG", "host=127.0.0.1 port=5432 user=postgres dbname=postgres")
HC = "autopilot.jobforge.healthcheck"
#: this process plays an API replica: the gate runs here, without a rate limit (the workers' is under test)
BENCH_FLAGS = (Flag.EVENTS, Flag.TRIGGERS, Flag.AUTOPILOT_JOBS, Flag.AUDIT_LOGGING, Flag.SECURITY_VALIDATION,
               Flag.VERIFY_PACK)
WORKER_FLAGS = (*BENCH_FLAGS, Flag.RATE_LIMITING)
#: events per throughput tenant, well under the workers' burst
PER_TENANT = 25
RSS_STEPS = 4
RSS_TARGET_MB = 250


@dataclass
class Round:
    workers: int
    events_per_s: float = 0.0
    #: events admitted by the gate (in this process) per second, while they were being submitted
    admitted_per_s: float = 0.0
    #: cores used per component during the event phase
    cores: dict[str, float] = field(default_factory=dict)
    verify_per_min: float = 0.0
    checks: list[str] = field(default_factory=list)
    idle_rss_mb: float = 0.0
    peak_rss_mb: float = 0.0
    peak_steps: int = 0


class Fleet:
    """k ``jobforge-worker`` processes with the same settings, logging to files."""

    def __init__(self, k: int, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        logs.mkdir(parents=True, exist_ok=True)
        self.procs: list[subprocess.Popen[bytes]] = []
        for index in range(k):
            with (logs / f"worker{index}.log").open("ab") as out:
                self.procs.append(subprocess.Popen([sys.executable, "-m", "workers.worker"], cwd=ROOT, env=env,
                                                   stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                                   start_new_session=True))

    def ready(self) -> bool:
        for index, proc in enumerate(self.procs):
            if proc.poll() is not None:
                tail = (self.logs / f"worker{index}.log").read_text(errors="replace").strip().splitlines()[-5:]
                raise RuntimeError(f"worker {index} exited ({proc.returncode}): " + " | ".join(tail))
        return all("worker_started" in (self.logs / f"worker{i}.log").read_text(errors="replace")
                   for i in range(len(self.procs)))

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            terminate(proc, 15)


def cpu_seconds(worker_pids: Sequence[int]) -> dict[str, float]:
    """CPU seconds used so far by each component on this machine: Temporal, PostgreSQL, workers, this process."""
    own = psutil.Process()
    groups: dict[str, list[psutil.Process]] = {
        "temporal": [c for c in own.children(recursive=True) if c.name().startswith("temporal")],
        "postgres": [p for p in psutil.process_iter() if p.name().startswith("postgres")],
        "workers": [psutil.Process(pid) for pid in worker_pids],
        "bench": [own],
    }
    out: dict[str, float] = {}
    for name, procs in groups.items():
        total = 0.0
        for proc in procs:
            try:
                times = proc.cpu_times()
            except psutil.Error:
                continue
            total += times.user + times.system
        out[name] = total
    return out


@contextmanager
def sampling(pid: int) -> Iterator[dict[str, float]]:
    """Peak RSS (MB) of process ``pid`` alone and the most step processes (its children) seen at once."""
    seen = {"rss_mb": 0.0, "children": 0.0}
    stop = threading.Event()
    proc = psutil.Process(pid)

    def sample() -> None:
        while not stop.is_set():
            try:
                seen["rss_mb"] = max(seen["rss_mb"], proc.memory_info().rss / 2**20)
                running = [c for c in proc.children() if c.status() != psutil.STATUS_ZOMBIE]
                seen["children"] = max(seen["children"], len(running))
            except psutil.Error:
                pass
            stop.wait(0.02)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join()


def write_repo(root: Path, name: str, steps: dict[str, str]) -> Path:
    """A tiny Python repository whose explicit verify config names the commands of its steps."""
    repo = root / name
    files = {
        ".jobforge/verify.toml": "".join(f'{step} = "{command}"\n' for step, command in steps.items()),
        "tiny/__init__.py": "",
        "tiny/core.py": "def add(a: int, b: int) -> int:\n    return a + b\n",
        "tests/__init__.py": "",
        "tests/test_core.py": textwrap.dedent("""
            import unittest

            from tiny.core import add


            class AddTest(unittest.TestCase):
                def test_add(self) -> None:
                    self.assertEqual(add(2, 3), 5)
            """).lstrip(),
    }
    for rel, content in files.items():
        path = repo / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return repo


async def wait_until(probe: Callable[[], Awaitable[bool]], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not await probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds:.0f}s waiting for {what}")
        await asyncio.sleep(0.05)


async def scalar(rt: Runtime, query: str, **params: object) -> int:
    async with rt.store.connection() as conn:
        row = await (await conn.execute(query, params)).fetchone()
    assert row is not None
    return int(row[0])


async def runs_done(rt: Runtime, tenants: Sequence[str], status: str = "succeeded") -> int:
    return await scalar(rt, "SELECT count(*) FROM runs WHERE tenant_id = ANY(%(t)s) AND template_key = %(hc)s "
                            "AND status = %(s)s", t=list(tenants), hc=HC, s=status)


async def fires(rt: Runtime, tenant: str, where: str = "TRUE") -> int:
    return await scalar(rt, f"SELECT count(*) FROM trigger_fires WHERE tenant_id = %(t)s AND {where}", t=tenant)


async def audit_counts(rt: Runtime, tenant: str) -> dict[str, int]:
    async with rt.store.connection() as conn:
        rows = await (await conn.execute("SELECT action || ':' || decision, count(*) FROM audit_log "
                                         "WHERE tenant_id = %(t)s GROUP BY 1", {"t": tenant})).fetchall()
    return {str(key): int(count) for key, count in rows}


def expect(condition: bool, what: str, detail: object) -> None:
    if not condition:
        raise AssertionError(f"{what}: {detail}")


class Bench:
    def __init__(self, args: argparse.Namespace, address: str, url: str, home: Path) -> None:
        self.args = args
        self.address = address
        self.url = url
        self.home = home
        self.repos = home / "repos"
        self.verify_repo = write_repo(self.repos, "tiny", {
            "lint": "python3 -m compileall -q -f tiny tests", "test": "python3 -m unittest discover -q -s tests"})
        self.rss_repo = write_repo(self.repos, "slow", {"lint": f"sleep {args.rss_step_seconds}"})

    def worker_env(self, settings: Settings) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("JOBFORGE_")}
        env.update({
            "PYTHONPATH": str(ROOT), "JOBFORGE_TEMPORAL_ADDRESS": self.address, "JOBFORGE_DATABASE_URL": self.url,
            "JOBFORGE_HOME": str(self.home), "JOBFORGE_TASK_QUEUE": settings.task_queue,
            "JOBFORGE_LOG_FORMAT": "json",
            "JOBFORGE_WORKER_GRACEFUL_SHUTDOWN_SECONDS": "2", "JOBFORGE_VERIFY_ALLOWED_ROOTS": str(self.repos),
            "JOBFORGE_RATE_LIMIT_PER_MINUTE": "1", "JOBFORGE_RATE_LIMIT_BURST": str(self.args.burst),
            "JOBFORGE_DATABASE_POOL_SIZE": "10",
            **{flag.value: "1" for flag in WORKER_FLAGS},
        })
        return env

    async def trigger(self, rt: Runtime, tenant: str, name: str, pattern: str, **safety: float) -> None:
        assert rt.temporal is not None
        service = TriggerService(rt.store.triggers, rt.temporal, rt.settings, rt.registry, rt.flags)
        await rt.gate.tenants.ensure_tenant(tenant)
        await service.create(TriggerSpec(tenant_id=tenant, name=name, kind=TriggerKind.EVENT, event_pattern=pattern,
                                         template_key=HC, inputs={"task_queues": [rt.settings.task_queue]},
                                         safety=SafetyConfig(**safety)))  # type: ignore[arg-type]

    async def submit_all(self, rt: Runtime, events: Sequence[EventEnvelope]) -> list[bool]:
        """Submit concurrently (C at a time); whether each was admitted as new (not a duplicate)."""
        client = rt.client()
        gate = asyncio.Semaphore(self.args.concurrency)

        async def one(event: EventEnvelope) -> bool:
            async with gate:
                return not (await client.submit_event(event)).duplicate

        return list(await asyncio.gather(*(one(e) for e in events)))

    async def run_round(self, k: int) -> Round:
        tag = f"s{k}{uuid.uuid4().hex[:6]}"
        settings = Settings(home=self.home, temporal_address=self.address, database_url=Secret(self.url),
                            task_queue=f"scale-{tag}", database_pool_size=self.args.concurrency + 5)
        result = Round(k)
        fleet = Fleet(k, self.worker_env(settings), self.home / "logs" / tag)
        try:
            deadline = time.monotonic() + 60
            while not fleet.ready():
                if time.monotonic() > deadline:
                    raise AssertionError("workers did not start within 60 s")
                await asyncio.sleep(0.1)
            async with open_runtime(settings) as rt:
                await self.warm_up(rt, tag)
                if k == 1:
                    result.idle_rss_mb = psutil.Process(fleet.procs[0].pid).memory_info().rss / 2**20
                before, started = cpu_seconds([p.pid for p in fleet.procs]), time.perf_counter()
                result.events_per_s, result.admitted_per_s = await self.throughput(rt, tag)
                after, elapsed = cpu_seconds([p.pid for p in fleet.procs]), time.perf_counter() - started
                result.cores = {name: (after[name] - before[name]) / elapsed for name in after}
                result.verify_per_min = await self.verify_concurrency(rt, tag)
                if k == 1:
                    await self.peak_rss(rt, tag, fleet.procs[0].pid, result)
                result.checks = await self.exactness(rt, tag)
        finally:
            await asyncio.to_thread(fleet.stop)
        return result

    async def warm_up(self, rt: Runtime, tag: str) -> None:
        """Every worker has polled and run the workflows once before the clock starts."""
        tenant = f"{tag}-warm"
        await self.trigger(rt, tenant, "warm", "warm.*")
        count = self.args.concurrency
        await self.submit_all(rt, [EventEnvelope(tenant_id=tenant, event_id=f"w{i}", event_type="warm.up")
                                   for i in range(count)])

        async def done() -> bool:
            return await runs_done(rt, [tenant]) == count

        await wait_until(done, 120, "the warm-up runs")

    async def throughput(self, rt: Runtime, tag: str) -> tuple[float, float]:
        """Events/s from the first submit to the last run's success, and events admitted/s while submitting."""
        n = self.args.events
        tenants = [f"{tag}-t{i}" for i in range(math.ceil(n / PER_TENANT))]
        for tenant in tenants:
            await self.trigger(rt, tenant, "orders", "order.*")
        events = [EventEnvelope(tenant_id=tenants[i % len(tenants)], event_id=f"o{i}", event_type="order.paid",
                                payload={"order": i}) for i in range(n)]
        started = time.perf_counter()
        admitted = await self.submit_all(rt, events)
        submitted = time.perf_counter() - started
        expect(all(admitted), "every throughput event is admitted", admitted.count(False))

        async def done() -> bool:
            return await runs_done(rt, tenants) >= n

        await wait_until(done, 600, f"{n} runs")
        elapsed = time.perf_counter() - started
        expect(await runs_done(rt, tenants) == n, "exactly one run per event", await runs_done(rt, tenants))
        return n / elapsed, n / submitted

    async def verify_runs(self, rt: Runtime, tenant: str, repo: Path, count: int) -> list[VerifyReport]:
        client = rt.client()
        await rt.gate.tenants.ensure_tenant(tenant)
        inputs = {"repo_path": str(repo), "options": {"install": False, "no_cache": True}}
        handles = await asyncio.gather(*(client.request_job(tenant, VERIFY, inputs) for _ in range(count)))
        reports = await asyncio.gather(*(client.result(h) for h in handles))
        out = [r for r in reports if isinstance(r, VerifyReport)]
        expect(len(out) == count and all(r.passed for r in out), "every verify run passes",
               [(r.verdict.value, [(s.name.value, s.status.value, s.reason) for s in r.steps]) for r in out])
        return out

    async def verify_concurrency(self, rt: Runtime, tag: str) -> float:
        count = self.args.verify_runs
        started = time.perf_counter()
        await self.verify_runs(rt, f"{tag}-verify", self.verify_repo, count)
        return count * 60 / (time.perf_counter() - started)

    async def peak_rss(self, rt: Runtime, tag: str, pid: int, result: Round) -> None:
        with sampling(pid) as seen:
            await self.verify_runs(rt, f"{tag}-rss", self.rss_repo, RSS_STEPS)
        result.peak_rss_mb = seen["rss_mb"]
        result.peak_steps = int(seen["children"])

    async def exactness(self, rt: Runtime, tag: str) -> list[str]:
        """Dedupe, rate limit, cooldown and audit chains: exact, with this round's workers deciding at once."""
        checks: list[str] = []
        d, b, e, m = self.args.dupes, self.args.burst, self.args.over, self.args.cooldown_events
        dup, limited, cool = f"{tag}-dup", f"{tag}-rl", f"{tag}-cool"
        await self.trigger(rt, dup, "dup", "dup.*")
        await self.trigger(rt, limited, "rl", "rl.*")
        await self.trigger(rt, cool, "cool", "cool.*", cooldown_seconds=3600)
        copies = [EventEnvelope(tenant_id=dup, event_id=f"d{i % d}", event_type="dup.seen") for i in range(3 * d)]
        flood = [EventEnvelope(tenant_id=limited, event_id=f"r{i}", event_type="rl.hit") for i in range(b + e)]
        burst = [EventEnvelope(tenant_id=cool, event_id=f"c{i}", event_type="cool.down") for i in range(m)]
        admitted = await self.submit_all(rt, [*copies, *flood, *burst])
        expect(sum(admitted[:3 * d]) == d, "dedupe: one admitted copy per event id", sum(admitted[:3 * d]))

        async def decided() -> bool:
            return (await fires(rt, dup), await fires(rt, limited), await fires(rt, cool)) == (d, b + e, m)

        await wait_until(decided, 300, "every fire decided")

        async def runs_settled() -> bool:
            return await runs_done(rt, [dup, limited, cool]) >= d + b + 1

        await wait_until(runs_settled, 300, "the fired runs")
        await asyncio.sleep(0.5)  # nothing more may appear
        expect(await runs_done(rt, [dup]) == d, "dedupe: one run per event id", await runs_done(rt, [dup]))
        checks.append(f"dedupe {d}/{3 * d} admitted")
        started = await fires(rt, limited, "verdict = 'fire' AND start_error = ''")
        refused = await fires(rt, limited, "start_error LIKE 'rate_limited%%'")  # psycopg: %% is a literal %
        runs = await runs_done(rt, [limited])
        expect((started, refused, runs) == (b, e, b), "rate limit: exactly the burst starts", (started, refused, runs))
        checks.append(f"rate limit {b} started / {e} refused")
        fired = await fires(rt, cool, "verdict = 'fire'")
        skipped = await fires(rt, cool, "verdict = 'skip'")
        runs = await runs_done(rt, [cool])
        expect((fired, skipped, runs) == (1, m - 1, 1), "cooldown: exactly one fire", (fired, skipped, runs))
        checks.append(f"cooldown 1 fire / {m - 1} skipped")
        expected = {
            dup: {"events.submit:allow": 3 * d, "triggers.fire:allow": d, "jobs.request:allow": d},
            limited: {"events.submit:allow": b + e, "triggers.fire:allow": b + e, "jobs.request:allow": b,
                      "jobs.request:deny": e},
            cool: {"events.submit:allow": m, "triggers.fire:allow": 1, "triggers.fire:deny": m - 1,
                   "jobs.request:allow": 1},
        }
        audit = rt.store.audit
        for tenant, counts in expected.items():
            verdict = await audit.verify(tenant)
            expect(verdict.ok, f"audit chain of {tenant} verifies", verdict.problems)
            expect(await audit_counts(rt, tenant) == counts, f"audit entries of {tenant}",
                   await audit_counts(rt, tenant))
        checks.append(f"audit chains ok ({sum(sum(c.values()) for c in expected.values())} entries exact)")
        return checks


def report(rounds: list[Round], args: argparse.Namespace) -> None:
    base = rounds[0]
    print(f"\nscale: {args.events} events at {args.concurrency} concurrent, {args.verify_runs} verify runs; "
          f"one Temporal dev server (SQLite+WAL), one PostgreSQL, {os.cpu_count()} cores")
    print(f"{'workers':>7}  {'event→run /s':>12}  {'efficiency':>10}  {'verify runs/min':>15}  {'efficiency':>10}")
    for r in rounds:
        eff_events = r.events_per_s / (r.workers / base.workers * base.events_per_s)
        eff_verify = r.verify_per_min / (r.workers / base.workers * base.verify_per_min)
        print(f"{r.workers:>7}  {r.events_per_s:>12.1f}  {eff_events:>10.2f}  {r.verify_per_min:>15.1f}  "
              f"{eff_verify:>10.2f}")
    for r in rounds:
        cores = ", ".join(f"{name} {value:.2f}" for name, value in r.cores.items())
        print(f"  {r.workers} worker(s): gate admitted {r.admitted_per_s:.1f} events/s; cores busy during the "
              f"event phase: {cores}")
    for r in rounds:
        print(f"  {r.workers} worker(s) exact: " + "; ".join(r.checks))
    first = next((r for r in rounds if r.peak_rss_mb), None)
    if first is not None:
        verdict = "ok" if first.peak_rss_mb < RSS_TARGET_MB else "OVER TARGET"
        print(f"worker RSS (own process, children excluded): idle {first.idle_rss_mb:.0f} MB, peak "
              f"{first.peak_rss_mb:.0f} MB with {first.peak_steps} verify steps running at once "
              f"(target < {RSS_TARGET_MB} MB: {verdict})")


async def bench(args: argparse.Namespace, home: Path, url: str) -> list[Round]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_binary()), data_converter=pydantic_data_converter, ui=False,
        dev_server_log_level="error",
        dev_server_extra_args=["--db-filename", str(home / "temporal.db"), "--sqlite-pragma", "journal_mode=wal",
                               "--sqlite-pragma", "synchronous=normal",
                               *[a for sa in search_attribute_args() for a in ("--search-attribute", sa)]])
    try:
        runner = Bench(args, str(env.client.service_client.config.target_host), url, home)
        rounds = []
        for k in args.workers:
            started = time.perf_counter()
            rounds.append(await runner.run_round(k))
            print(f"round with {k} worker(s): {time.perf_counter() - started:.0f}s "
                  f"({rounds[-1].events_per_s:.1f} events/s, {rounds[-1].verify_per_min:.1f} verify runs/min)",
                  flush=True)
        return rounds
    finally:
        await env.shutdown()


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--workers", default="1,2,4", type=lambda s: [int(x) for x in s.split(",") if x],
                        help="worker counts, comma separated (the first is the efficiency baseline)")
    parser.add_argument("--events", type=int, default=200, help="events per throughput round")
    parser.add_argument("--concurrency", type=int, default=20, help="concurrent event submissions")
    parser.add_argument("--verify-runs", type=int, default=12, help="verify runs started at once per round")
    parser.add_argument("--dupes", type=int, default=20, help="event ids submitted 3 times each")
    parser.add_argument("--burst", type=int, default=40, help="the workers' rate-limit burst per tenant")
    parser.add_argument("--over", type=int, default=10, help="fires beyond the burst (refused)")
    parser.add_argument("--cooldown-events", type=int, default=10, help="events at a trigger with a 1 h cooldown")
    parser.add_argument("--rss-step-seconds", type=float, default=3.0, help="length of each step of the RSS probe")
    args = parser.parse_args(argv)
    if args.burst < PER_TENANT + 1:
        parser.error(f"--burst must exceed {PER_TENANT} (the throughput events per tenant)")
    return args


def main() -> None:
    args = parse()
    for flag in BENCH_FLAGS:
        os.environ[flag.value] = "1"
    os.environ.pop(Flag.RATE_LIMITING.value, None)
    name = f"jobforge_scale_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    try:
        upgrade(url)
        with tempfile.TemporaryDirectory(prefix="jobforge-scale-") as tmp:
            rounds = asyncio.run(bench(args, Path(tmp), url))
        report(rounds, args)
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


if __name__ == "__main__":
    main()
