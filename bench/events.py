"""Events benchmark: raw Temporal start_workflow throughput vs JobForge event → run throughput.

In one run, on one Temporal dev server (SQLite file, WAL) and the machine's PostgreSQL:

1. baseline A: N raw ``start_workflow`` calls (K at a time) of a workflow nobody runs → starts/s:
   the server's price of a start alone, no workflow task, no activity (no design that runs the
   fired template can come near it: even B is a fraction of it);
2. baseline B: N raw ``start_workflow`` calls of a bare one-activity workflow
   (``bench/templates/bare.py``, no JobForge code) served by a worker in this process → runs/s until
   the last run's activity has started: what Temporal alone delivers to its first activity;
3. baseline C (the same runs, started raw): N raw ``start_workflow`` calls of the very template the
   trigger fires (``bench.jobforge.many``, one trivial activity), with the same inputs, served by
   the same JobForge worker → runs/s until the last run's first activity (admission, which applies
   the full gate to a run started without a receipt) has started: the run without the event path;
4. JobForge: N events submitted (K at a time) through the whole gate (limits, rate limit, dedupe,
   audit) and the durable router, each firing one trigger whose run's first activity (admission)
   starts → events/s until the last run has started; ratios = JobForge / A, / B and / C (what the
   gate and the router cost on top of starting the run raw: target >= 0.7). C and JobForge run
   twice each, in the order C, JobForge, JobForge, C, and are averaged, so that the machine's
   drift over the run weighs on both alike;
5. latency from ``submit_event`` returning to the template's first activity starting (p50/p99),
   next to baselines B's and C's latency from ``start_workflow`` returning to that activity.

The target's "raw Temporal start_workflow throughput" is read as C: the runs JobForge's events
fire, started directly with Temporal's ``start_workflow`` instead, on the same worker, to the same
finish line, so that the ratio prices exactly "through the whole gate and router". A is printed
for reference; it is a ceiling no run-executing path reaches (B, with no JobForge code at all, is
about a fifth of it).

C and JobForge are served by one ``jobforge-worker`` process apart from this one, which submits
(events through the gate, as an API replica or an app's SDK does, or raw starts), as JobForge is
deployed (``jobforge dev``, compose); ``--in-process`` puts the worker in this process instead. A
and B use a worker in this process. Usage: ``python bench/events.py [N] [K] [--in-process]``

``--rate R [--duration S]`` measures latency at a steady offered load instead of behind a burst: B
(raw ``start_workflow`` of the bare workflow) and then JobForge (``submit_event``) are each offered
R items per second for S seconds (default 60), open-loop (each call on its schedule, however slow
the previous ones), and the p50/p99 from the call returning to the run's first activity (B: its
activity; JobForge: admission) are printed side by side. Take R at 50% and 80% of B's throughput
from a burst run on the same (quiet) machine. The per-run counts (workflow tasks, history events,
PostgreSQL statements) are ``bench/run_cost.py``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
import psycopg
from psycopg import sql
from temporalio.client import WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from shared.settings import Secret

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.templates import bare
from jobforge.models import EventEnvelope, JobRun, TriggerKind, TriggerSpec
from shared.flags import Flag
from shared.search_attributes import search_attribute_args
from shared.settings import Settings
from shared.store.migrate import upgrade
from shared.triggers.service import TriggerService
from workers.runtime import open_runtime
from workers.stack import temporal_binary
from workers.worker import WORKFLOW_RUNNER, build_workers

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN = os.environ.get("JOBFORGE_TEST_PG", "host=127.0.0.1 port=5432 user=postgres dbname=postgres")
FLAGS = (Flag.EVENTS, Flag.TRIGGERS, Flag.AUTOPILOT_JOBS, Flag.AUDIT_LOGGING, Flag.RATE_LIMITING,
         Flag.SECURITY_VALIDATION)


class CpuMeter:
    """CPU seconds spent by this process and by the Temporal dev server (a child) between marks.

    Wall-clock rates swing with whatever else the machine runs; CPU seconds per event do not, so
    the benchmark prints both.
    """

    def __init__(self) -> None:
        me = psutil.Process()
        self.procs = {"bench process": me}
        for child in me.children(recursive=True):
            if "temporal" in child.name():
                self.procs["temporal server"] = child
        self.last = self._read()

    def add(self, name: str, proc: psutil.Process) -> None:
        """Count ``proc`` too from now on (a worker process started after the first mark)."""
        self.procs[name] = proc
        self.last[name] = sum(proc.cpu_times()[:2])

    def _read(self) -> dict[str, float]:
        return {name: sum(proc.cpu_times()[:2]) for name, proc in self.procs.items()}

    def mark(self) -> dict[str, float]:
        now = self._read()
        spent = {name: now[name] - self.last[name] for name in now}
        self.last = now
        return spent


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def start_worker(settings: Settings, url: str, log: Path) -> subprocess.Popen[bytes]:
    """A ``jobforge-worker`` process on this bench's task queue, with the bench's template module."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JOBFORGE_TEMPORAL_ADDRESS": settings.temporal_address,
           "JOBFORGE_DATABASE_URL": url, "JOBFORGE_HOME": str(settings.home),
           "JOBFORGE_TASK_QUEUE": settings.task_queue,
           "JOBFORGE_TEMPLATE_MODULES": ",".join(settings.template_modules), "JOBFORGE_LOG_FORMAT": "json",
           "JOBFORGE_RATE_LIMIT_PER_MINUTE": str(settings.rate_limit_per_minute),
           "JOBFORGE_DATABASE_POOL_SIZE": str(settings.database_pool_size)}
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "workers.worker"], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)


async def start_env(home: Path) -> WorkflowEnvironment:
    """The bench's Temporal dev server: SQLite file with WAL, JobForge's search attributes."""
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_binary()), data_converter=pydantic_data_converter, ui=False,
        dev_server_log_level="error",
        dev_server_extra_args=["--db-filename", str(home / "temporal.db"), "--sqlite-pragma", "journal_mode=wal",
                               "--sqlite-pragma", "synchronous=normal",
                               *[a for sa in search_attribute_args() for a in ("--search-attribute", sa)]])


def read_log(log: Path) -> str:
    return log.read_text(errors="replace") if log.exists() else ""


async def wait_worker_started(worker: subprocess.Popen[bytes], log: Path) -> None:
    while "worker_started" not in await asyncio.to_thread(read_log, log):
        if worker.poll() is not None:
            raise RuntimeError("the worker exited: " + (await asyncio.to_thread(read_log, log))[-2000:])
        await asyncio.sleep(0.1)


async def offer(rate: float, duration: float, one: Any) -> int:
    """Call ``one(i)`` at ``rate`` per second for ``duration`` seconds, each on schedule (an open loop:
    a slow call does not delay the next); the number offered, once every call has returned."""
    count = max(1, round(rate * duration))
    loop = asyncio.get_running_loop()
    begin = loop.time()
    calls = []
    for i in range(count):
        delay = begin + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        calls.append(asyncio.ensure_future(one(i)))
    await asyncio.gather(*calls)
    return count


async def rate_bench(rate: float, duration: float, home: Path, url: str) -> None:
    """Steady offered load: B and JobForge each offered ``rate`` items/s for ``duration`` seconds;
    p50/p99 from the call returning (``start_workflow`` / ``submit_event``) to the run's first activity."""
    env = await start_env(home)
    try:
        settings = Settings(home=home, temporal_address=env.client.service_client.config.target_host,
                            database_url=Secret(url), task_queue=f"bench-{uuid.uuid4().hex[:8]}",
                            rate_limit_per_minute=10**7, database_pool_size=50,
                            template_modules=["bench.templates.many_activities"])
        bare_queue = f"bench-bare-{uuid.uuid4().hex[:8]}"
        bare_returned: dict[str, float] = {}

        async def bare_run(key: str) -> None:
            await env.client.start_workflow(bare.BareWorkflow.run, key, id=f"bare-{key}-{uuid.uuid4().hex}",
                                            task_queue=bare_queue)
            bare_returned[key] = time.time()

        print(f"phase: B at {rate:g}/s for {duration:g} s", file=sys.stderr, flush=True)
        async with Worker(env.client, task_queue=bare_queue, workflows=[bare.BareWorkflow], activities=[bare.mark],
                          workflow_runner=WORKFLOW_RUNNER,
                          max_concurrent_activities=settings.worker_max_concurrent_activities,
                          max_concurrent_workflow_tasks=settings.worker_max_concurrent_workflow_tasks):
            await asyncio.gather(*(bare_run(f"w{i}") for i in range(10)))
            await bare.wait_started([f"w{i}" for i in range(10)])
            count = await offer(rate, duration, lambda i: bare_run(f"b{i}"))
            keys = [f"b{i}" for i in range(count)]
            await bare.wait_started(keys)
        bare_latencies = [bare.STARTED[k] - bare_returned[k] for k in keys]

        async with open_runtime(settings) as rt:
            assert rt.temporal is not None
            log = home / "worker.log"
            worker = start_worker(settings, url, log)
            try:
                await wait_worker_started(worker, log)
                triggers = TriggerService(rt.store.triggers, rt.temporal, settings, rt.registry, rt.flags)
                for tenant in ("warmup", "steady"):
                    await rt.gate.tenants.ensure_tenant(tenant)
                    await triggers.create(TriggerSpec(
                        tenant_id=tenant, name="every-order", kind=TriggerKind.EVENT, event_pattern="order.*",
                        template_key="bench.jobforge.many", inputs={"activities": 1, "batch": 1}))
                client = rt.client()
                returned: dict[str, float] = {}

                async def submit(tenant: str, i: int) -> None:
                    await client.submit_event(EventEnvelope(tenant_id=tenant, event_id=f"o{i}",
                                                            event_type="order.paid", payload={"order": i}))
                    returned[f"{tenant}/o{i}"] = time.time()

                query = ("SELECT f.tenant_id || '/' || f.event_id, extract(epoch FROM r.created_at) "
                         "FROM trigger_fires f JOIN runs r ON r.workflow_id = f.run_workflow_id "
                         "WHERE f.tenant_id = %(t)s")

                async def admitted(tenant: str, count: int) -> list[tuple[str, float]]:
                    while True:
                        async with rt.store.connection() as conn:
                            rows = [(r[0], float(r[1]))
                                    for r in await (await conn.execute(query, {"t": tenant})).fetchall()]
                        if len(rows) >= count:
                            return rows
                        await asyncio.sleep(0.1)

                await asyncio.gather(*(submit("warmup", i) for i in range(10)))
                await admitted("warmup", 10)
                print(f"phase: JobForge at {rate:g}/s for {duration:g} s", file=sys.stderr, flush=True)
                count = await offer(rate, duration, lambda i: submit("steady", i))
                rows = await admitted("steady", count)
            finally:
                worker.send_signal(signal.SIGTERM)
                try:
                    await asyncio.to_thread(worker.wait, 30)
                except subprocess.TimeoutExpired:
                    worker.kill()
        latencies = [created - returned[key] for key, created in rows]
        print(f"steady load: {rate:g} items/s offered for {duration:g} s ({count} items), a jobforge-worker process; "
              "dev server on SQLite+WAL")
        for label, values in (("B. start_workflow returned → its activity", bare_latencies),
                              ("JobForge submit_event returned → admission", latencies)):
            print(f"  {label:44s} p50 {statistics.median(values) * 1e3:7.0f} ms   "
                  f"p99 {pct(values, 0.99) * 1e3:7.0f} ms")
        b50, b99 = statistics.median(bare_latencies), pct(bare_latencies, 0.99)
        j50, j99 = statistics.median(latencies), pct(latencies, 0.99)
        print(f"  JobForge p50 - B p50 {1e3 * (j50 - b50):+.0f} ms (target <= +30 ms at 50% of B's throughput), "
              f"p99 / B p99 {j99 / b99:.2f} (target <= 2)")
    finally:
        await env.shutdown()


async def bench(n: int, concurrency: int, home: Path, url: str, separate_worker: bool) -> None:
    env = await start_env(home)
    try:
        settings = Settings(home=home, temporal_address=env.client.service_client.config.target_host,
                            database_url=Secret(url), task_queue=f"bench-{uuid.uuid4().hex[:8]}",
                            rate_limit_per_minute=10**7, database_pool_size=concurrency + 5,
                            template_modules=["bench.templates.many_activities"])
        sem = asyncio.Semaphore(concurrency)

        # 1. baseline: raw start_workflow
        async def raw(i: int) -> None:
            async with sem:
                await env.client.start_workflow("bench.noop", id=f"raw-{i}-{uuid.uuid4().hex}",
                                                task_queue="bench-nobody-polls")

        await asyncio.gather(*(raw(-i - 1) for i in range(20)))
        cpu = CpuMeter()
        started = time.perf_counter()
        await asyncio.gather(*(raw(i) for i in range(n)))
        baseline = n / (time.perf_counter() - started)
        cpu_a = cpu.mark()

        # 2. baseline B: raw start_workflow of a bare one-activity workflow, to its activity starting
        bare_queue = f"bench-bare-{uuid.uuid4().hex[:8]}"
        bare_returned: dict[str, float] = {}

        async def bare_run(key: str) -> WorkflowHandle[Any, Any]:
            async with sem:
                handle = await env.client.start_workflow(bare.BareWorkflow.run, key,
                                                         id=f"bare-{key}-{uuid.uuid4().hex}", task_queue=bare_queue)
                bare_returned[key] = time.time()
                return handle

        async with Worker(env.client, task_queue=bare_queue, workflows=[bare.BareWorkflow], activities=[bare.mark],
                          workflow_runner=WORKFLOW_RUNNER,
                          max_concurrent_activities=settings.worker_max_concurrent_activities,
                          max_concurrent_workflow_tasks=settings.worker_max_concurrent_workflow_tasks):
            warm = [f"w{i}" for i in range(20)]
            await asyncio.gather(*(h.result() for h in await asyncio.gather(*(bare_run(k) for k in warm))))
            keys = [f"b{i}" for i in range(n)]
            cpu.mark()
            started = time.perf_counter()
            handles = await asyncio.gather(*(bare_run(k) for k in keys))
            await bare.wait_started(keys)
            bare_rate = n / (time.perf_counter() - started)
            await asyncio.gather(*(h.result() for h in handles))  # CPU counts each run start to finish
            cpu_b = cpu.mark()
        bare_latencies = [bare.STARTED[k] - bare_returned[k] for k in keys]

        # 3. baseline C and 4 + 5: the template's runs started raw, and fired by events through the gate and
        # the router, on the same worker, to the same finish line (the run's admission recorded it); in the
        # order C, JobForge, JobForge, C so that a drift of the machine over the run weighs on both alike
        async with open_runtime(settings) as rt:
            assert rt.temporal is not None
            worker: subprocess.Popen[bytes] | None = None
            workers: list[Worker] = []
            if separate_worker:  # as deployed: submitters (API replicas, apps' SDKs) apart from the workers
                log = home / "worker.log"
                worker = start_worker(settings, url, log)
                await wait_worker_started(worker, log)
                cpu.add("jobforge worker", psutil.Process(worker.pid))
            else:  # one process for everything
                workers = build_workers(rt)
            tasks = [asyncio.ensure_future(w.run()) for w in workers]
            try:
                template_inputs = {"activities": 1, "batch": 1}
                triggers = TriggerService(rt.store.triggers, rt.temporal, settings, rt.registry, rt.flags)
                for tenant in ("warmup", "raw-warmup", "raw-1", "raw-2"):
                    await rt.gate.tenants.ensure_tenant(tenant)
                for tenant in ("bench-1", "bench-2"):
                    await rt.gate.tenants.ensure_tenant(tenant)
                    await triggers.create(TriggerSpec(
                        tenant_id=tenant, name="every-order", kind=TriggerKind.EVENT, event_pattern="order.*",
                        # a template with one trivial activity: the router and the gate are what is measured
                        template_key="bench.jobforge.many", inputs=template_inputs))
                client = rt.client()
                returned: dict[str, float] = {}

                async def raw_run(tenant: str, i: int) -> None:
                    async with sem:
                        workflow_id = f"raw-run-{tenant}-{i}-{uuid.uuid4().hex}"
                        await env.client.start_workflow(
                            "bench.jobforge.many", JobRun(tenant_id=tenant, template_key="bench.jobforge.many",
                                                          inputs=template_inputs, actor="bench"),
                            id=workflow_id, task_queue=settings.task_queue)
                        returned[workflow_id] = time.time()

                async def submit(tenant: str, i: int) -> None:
                    async with sem:
                        await client.submit_event(EventEnvelope(tenant_id=tenant, event_id=f"o{i}",
                                                                event_type="order.paid", payload={"order": i}))
                        returned[f"{tenant}/o{i}"] = time.time()

                async def until(query: str, tenant: str, count: int) -> list[tuple[str, float]]:
                    while True:
                        async with rt.store.connection() as conn:
                            rows = [(r[0], float(r[1]))
                                    for r in await (await conn.execute(query, {"t": tenant})).fetchall()]
                        if len(rows) >= count:
                            return rows
                        await asyncio.sleep(0.05)

                admitted_raw = ("SELECT workflow_id, extract(epoch FROM created_at) FROM runs "
                                "WHERE tenant_id = %(t)s")
                admitted_fired = ("SELECT f.tenant_id || '/' || f.event_id, extract(epoch FROM r.created_at) "
                                  "FROM trigger_fires f JOIN runs r ON r.workflow_id = f.run_workflow_id "
                                  "WHERE f.tenant_id = %(t)s")
                finished = ("SELECT workflow_id, 0 FROM runs WHERE tenant_id = %(t)s AND finished_at IS NOT NULL")

                async def phase(kind: str, tenant: str) -> tuple[float, list[float], dict[str, float], float]:
                    """One burst of N: (items/s to admission, latencies, CPU spent to each run's end, submit s)."""
                    print(f"phase: {'JobForge events' if kind == 'J' else 'raw template runs'}", file=sys.stderr,
                          flush=True)
                    cpu.mark()
                    started = time.perf_counter()
                    await asyncio.gather(*((raw_run if kind == "C" else submit)(tenant, i) for i in range(n)))
                    submitted = time.perf_counter() - started
                    rows = await until(admitted_raw if kind == "C" else admitted_fired, tenant, n)
                    rate = n / (time.perf_counter() - started)
                    await until(finished, tenant, n)  # CPU counts each run from its start to its end
                    return rate, [created - returned[key] for key, created in rows], cpu.mark(), submitted

                await asyncio.gather(*(raw_run("raw-warmup", i) for i in range(20)))
                await asyncio.gather(*(submit("warmup", i) for i in range(20)))
                await until(finished, "raw-warmup", 20)
                await asyncio.sleep(1.0)  # let the warm-up events' routing finish
                results = {key: await phase(key[0], tenant) for key, tenant in
                           (("C1", "raw-1"), ("J1", "bench-1"), ("J2", "bench-2"), ("C2", "raw-2"))}
            finally:
                await asyncio.gather(*(w.shutdown() for w in workers))
                await asyncio.gather(*tasks, return_exceptions=True)
                if worker is not None:
                    worker.send_signal(signal.SIGTERM)
                    try:
                        await asyncio.to_thread(worker.wait, 30)
                    except subprocess.TimeoutExpired:
                        worker.kill()

        def merged(kind: str) -> tuple[float, list[float], dict[str, float], float]:
            one, two = results[f"{kind}1"], results[f"{kind}2"]
            cpu_spent = {name: (one[2][name] + two[2][name]) / 2 for name in one[2]}
            return (one[0] + two[0]) / 2, one[1] + two[1], cpu_spent, (one[3] + two[3]) / 2

        raw_rate, raw_latencies, cpu_c, _ = merged("C")
        throughput, latencies, cpu_j, submitted = merged("J")
        shape = ("a jobforge-worker process apart from this submitting process for C and JobForge"
                 if separate_worker else "one worker in this process")
        print(f"events: {n} at {concurrency} concurrent, {shape}; dev server on SQLite+WAL")
        print(f"  A. raw start_workflow, nobody runs it          {baseline:7.1f} /s")
        print(f"  B. raw start_workflow → its activity starts    {bare_rate:7.1f} /s   "
              f"(p50 {statistics.median(bare_latencies) * 1e3:.0f} ms, p99 {pct(bare_latencies, 0.99) * 1e3:.0f} ms)")
        print(f"  C. raw start_workflow of the template → admission {raw_rate:7.1f} /s   "
              f"(p50 {statistics.median(raw_latencies) * 1e3:.0f} ms, p99 {pct(raw_latencies, 0.99) * 1e3:.0f} ms; "
              f"rounds {results['C1'][0]:.1f}, {results['C2'][0]:.1f})")
        print(f"  JobForge event → run's first activity (admission) {throughput:7.1f} /s   "
              f"(rounds {results['J1'][0]:.1f}, {results['J2'][0]:.1f})")
        print(f"  ratios: JobForge / A {throughput / baseline:.2f}, / B {throughput / bare_rate:.2f}, "
              f"/ C {throughput / raw_rate:.2f} (target >= 0.7)")
        for name in cpu_j:
            a, b, c, j = (1e3 * spent.get(name, 0.0) / n for spent in (cpu_a, cpu_b, cpu_c, cpu_j))
            print(f"  CPU per item (run to its end), {name:16s} A {a:6.2f} ms   B {b:6.2f} ms   C {c:6.2f} ms   "
                  f"JobForge {j:6.2f} ms (C/JobForge {c / j:.2f})")
        total = [sum(spent.values()) for spent in (cpu_a, cpu_b, cpu_c, cpu_j)]
        print(f"  CPU per item (run to its end), all processes       A {1e3 * total[0] / n:6.2f} ms   "
              f"B {1e3 * total[1] / n:6.2f} ms   C {1e3 * total[2] / n:6.2f} ms   "
              f"JobForge {1e3 * total[3] / n:6.2f} ms (C/JobForge {total[2] / total[3]:.2f})")
        print(f"  (each round's {n} submit_event calls returned after {submitted:.1f}s on average: gate throughput "
              f"{n / submitted:.1f}/s)")
        print(f"  submit_event returned → first activity of the run: p50 {statistics.median(latencies) * 1e3:.0f} ms,"
              f" p99 {pct(latencies, 0.99) * 1e3:.0f} ms")
    finally:
        await env.shutdown()


def option(name: str) -> float | None:
    """The value of ``--name V`` or ``--name=V`` on the command line, if given."""
    argv = sys.argv[1:]
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return float(argv[i + 1])
        if arg.startswith(name + "="):
            return float(arg.split("=", 1)[1])
    return None


def main() -> None:
    rate, duration = option("--rate"), option("--duration") or 60.0
    valued = {i + 1 for i, a in enumerate(sys.argv) if a in ("--rate", "--duration")}
    args = [a for i, a in enumerate(sys.argv) if i > 0 and i not in valued and not a.startswith("--")]
    n = int(args[0]) if args else 400
    concurrency = int(args[1]) if len(args) > 1 else 20
    separate_worker = "--in-process" not in sys.argv
    for flag in FLAGS:
        os.environ.setdefault(flag.value, "1")  # e.g. JOBFORGE_AUDIT_LOGGING_ENABLED=0 to see the audit's share
    name = f"jobforge_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    try:
        upgrade(url)
        with tempfile.TemporaryDirectory() as tmp:
            if rate is not None:
                asyncio.run(rate_bench(rate, duration, Path(tmp), url))
            else:
                asyncio.run(bench(n, concurrency, Path(tmp), url, separate_worker))
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


if __name__ == "__main__":
    main()
