"""Per-run cost breakdown by counting (load-independent): B, C and JobForge as ``bench/events.py`` defines them.

For each of

- B: a bare one-activity workflow (``bench/templates/bare.py``) started with raw ``start_workflow``,
  served by a worker in this process (no JobForge code, no PostgreSQL);
- C: the template the trigger fires (``bench.jobforge.many``, one trivial activity) started raw, served
  by a ``jobforge-worker`` process;
- JobForge: an event submitted through the gate (``submit_event``) whose event trigger fires that
  template through the tenant's router, served by the same worker;

it runs N items (K at a time, each phase on its own tenant), waits until every run has finished (its
history is archived, when REPLAY_PACK_ENABLED is on: it is off in ``bench/events.py``'s flag set) and,
for JobForge, every event is routed, and then counts per item:

- Temporal history: workflow tasks, activity tasks, local-activity markers, signals, search-attribute
  upserts, all events, history bytes and payload bytes (``fetch_history`` of every run; for JobForge the
  tenant's router history is added, divided by N, since routing is shared by the events);
- Temporal server work: gRPC requests (``service_requests``) and persistence operations
  (``persistence_requests``) from the dev server's Prometheus endpoint, the difference over the phase;
- CPU milliseconds per item of each process (this one, the worker, the dev server, the private PostgreSQL
  with its backends): *load-dependent*, printed with the load average, for a rough A/B between commits on
  the same machine; the ratios that count are ``bench/events.py``'s on a quiet machine;
- PostgreSQL: statements and round trips, by client process, from a *private* PostgreSQL started
  for this bench (initdb in a temporary directory, free port, ``log_statement=all``): every message
  the server logs is counted as one round trip (a pipeline sends several in one: the audit chain's step
  logs 4, BEGIN, claim, append, COMMIT, sent in 2 network round trips); statements exclude
  BEGIN/COMMIT/ROLLBACK. Each client process
  connects with its own ``application_name`` (the bench's own polling is left out).

Counts do not depend on the machine's load (except polls and background loops, which the idle row shows:
what the worker does per second with nothing to do). Usage: ``python bench/run_cost.py [N] [K]``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil
import psycopg
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from shared.settings import Secret

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.events import FLAGS, start_worker, wait_worker_started
from bench.templates import bare
from jobforge.models import EventEnvelope, JobRun, TriggerKind, TriggerSpec
from shared.events import router_workflow_id
from shared.flags import Flag
from shared.search_attributes import search_attribute_args
from shared.settings import Settings
from shared.store.direct import conninfo
from shared.store.migrate import upgrade
from shared.triggers.service import TriggerService
from workers.runtime import open_runtime
from workers.stack import temporal_binary
from workers.worker import WORKFLOW_RUNNER

PG_USER = "postgres"
TEMPLATE = "bench.jobforge.many"
TEMPLATE_INPUTS = {"activities": 1, "batch": 1}
#: the server logs each message a client sends: a simple query as "statement:", an extended one as "execute"
LOGGED = re.compile(r"^(?P<app>[^|]*)\|\d+\|LOG:  (?:statement|execute [^:]*): (?P<sql>.*)")
MARK = "jobforge_run_cost_mark"
#: the dev server publishes its counters about once a second: wait this long before reading them
METRICS_LAG = 2.5
TX = ("BEGIN", "COMMIT", "ROLLBACK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivatePostgres:
    """A throwaway PostgreSQL (run as the ``postgres`` system user) that logs every statement."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "pg"
        self.port = free_port()
        self.log = root / "pg.log"

    def _as_postgres(self, *cmd: str) -> None:
        subprocess.run(["runuser", "-u", PG_USER, "--", *cmd], check=True, capture_output=True, timeout=180)

    def start(self) -> None:
        self.dir.mkdir()
        self.log.touch()
        shutil.chown(self.dir, PG_USER)
        shutil.chown(self.log, PG_USER)
        self._as_postgres("initdb", "-D", str(self.dir), "--auth=trust", "-U", PG_USER, "--no-sync")
        options = (f"-h 127.0.0.1 -p {self.port} -c unix_socket_directories='' -c fsync=off "
                   "-c log_statement=all -c log_line_prefix='%a|%p|' -c max_connections=200")
        self._as_postgres("pg_ctl", "-D", str(self.dir), "-w", "-t", "120", "-l", str(self.log), "-o", options,
                          "start")

    def stop(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError):
            self._as_postgres("pg_ctl", "-D", str(self.dir), "-w", "-t", "60", "-m", "fast", "stop")

    def url(self, app: str) -> str:
        return f"postgresql+psycopg://{PG_USER}@127.0.0.1:{self.port}/postgres?application_name={app}"

    def mark(self, label: str) -> None:
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user={PG_USER} dbname=postgres "
                             "application_name=mark", autocommit=True) as conn:
            conn.execute(f"SELECT '{MARK}:{label}'")

    def counts(self) -> dict[str, dict[str, collections.Counter[str]]]:
        """{phase: {application: Counter(round_trips=…, statements=…, <verb>=…)}} between marks."""
        phases: dict[str, dict[str, collections.Counter[str]]] = {}
        current: str | None = None
        lines = self.log.read_text(errors="replace").splitlines()
        for i, line in enumerate(lines):
            m = LOGGED.match(line)
            if m is None:
                continue
            sql_text = m["sql"].strip()
            if not sql_text and i + 1 < len(lines):  # a statement whose text starts on the next line
                sql_text = lines[i + 1].strip()
            if MARK in sql_text:
                current = sql_text.split(f"{MARK}:", 1)[1].rstrip("'")
                continue
            if current is None or m["app"] in ("mark", "bench-poll"):
                continue
            counter = phases.setdefault(current, {}).setdefault(m["app"] or "?", collections.Counter())
            counter["round_trips"] += 1
            verb = sql_text.split(None, 1)[0].upper() if sql_text else "?"
            if verb not in TX:
                counter["statements"] += 1
            counter[verb] += 1
            counter["sql:" + " ".join(sql_text.split())[:100]] += 1
        return phases


class CpuClock:
    """CPU microseconds (user + system) of named processes, as counters; a process's reaped children count for
    it (PostgreSQL's backends are children of its postmaster)."""

    def __init__(self) -> None:
        self.procs: dict[str, psutil.Process] = {}

    def add(self, name: str, proc: psutil.Process) -> None:
        self.procs[name] = proc

    def read(self) -> collections.Counter[str]:
        out: collections.Counter[str] = collections.Counter()
        for name, proc in self.procs.items():
            with contextlib.suppress(psutil.Error):
                t = proc.cpu_times()
                spent = t.user + t.system + (t.children_user + t.children_system if name == "postgres" else 0.0)
                if name == "postgres":
                    for child in proc.children():
                        with contextlib.suppress(psutil.Error):
                            c = child.cpu_times()
                            spent += c.user + c.system
                out[f"cpu:{name}"] += round(spent * 1e6)
        return out


def postmaster(pgdir: Path) -> psutil.Process:
    return psutil.Process(int((pgdir / "postmaster.pid").read_text().splitlines()[0]))


class ServerMetrics:
    """The Temporal dev server's request and persistence counters (Prometheus text)."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/metrics"

    def read(self) -> collections.Counter[str]:
        body = urllib.request.urlopen(self.url, timeout=10).read().decode()
        out: collections.Counter[str] = collections.Counter()
        for line in body.splitlines():
            for metric in ("service_requests", "persistence_requests"):
                if line.startswith(metric + "{"):
                    op = re.search(r'operation="([^"]*)"', line)
                    service = re.search(r'service_name="([^"]*)"', line)
                    if metric == "service_requests" and service and service[1] != "frontend":
                        continue  # the history and matching services count the same call again
                    out[f"{metric}:{op[1] if op else '?'}"] += int(float(line.rsplit(" ", 1)[1]))
        return out


def payload_bytes(message: Message) -> int:
    """Bytes of every ``Payload`` inside ``message`` (inputs, results, signal arguments, markers' data)."""
    if isinstance(message, Payload):
        return message.ByteSize()
    total = 0
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if field.message_type.GetOptions().map_entry:
            total += sum(payload_bytes(v) for v in value.values() if isinstance(v, Message))
        elif isinstance(value, Message):
            total += payload_bytes(value)
        else:  # a repeated field
            total += sum(payload_bytes(v) for v in value)
    return total


def event_kind(event: HistoryEvent) -> str:
    """The event's type; a marker's name, and a local activity's type (from its marker's ``data``)."""
    kind = EventType.Name(event.event_type).removeprefix("EVENT_TYPE_")
    if not event.HasField("marker_recorded_event_attributes"):
        return kind
    marker = event.marker_recorded_event_attributes
    kind = marker.marker_name
    data = marker.details.get("data")
    if data is not None and data.payloads:
        with contextlib.suppress(ValueError, AttributeError):
            found = json.loads(data.payloads[0].data).get("activity_type")
            if found:
                kind += f" {found}"
    return kind


def history_counts(events: Sequence[HistoryEvent]) -> collections.Counter[str]:
    c: collections.Counter[str] = collections.Counter()
    for event in events:
        c[EventType.Name(event.event_type).removeprefix("EVENT_TYPE_")] += 1
        if event.HasField("marker_recorded_event_attributes"):
            c["marker:" + event.marker_recorded_event_attributes.marker_name] += 1
        c["history_bytes"] += event.ByteSize()
        payloads = payload_bytes(event)
        c["payload_bytes"] += payloads
        if payloads:
            c["payload:" + event_kind(event)] += payloads
    c["events"] = len(events)
    return c


async def histories(client: Client, workflow_ids: list[str]) -> collections.Counter[str]:
    total: collections.Counter[str] = collections.Counter()
    sem = asyncio.Semaphore(10)

    async def one(wid: str) -> None:
        async with sem:
            total.update(history_counts((await client.get_workflow_handle(wid).fetch_history()).events))

    await asyncio.gather(*(one(w) for w in workflow_ids))
    return total


ROWS: list[tuple[str, str]] = [
    ("workflow tasks", "WORKFLOW_TASK_SCHEDULED"), ("activity tasks", "ACTIVITY_TASK_SCHEDULED"),
    ("markers", "MARKER_RECORDED"), ("  of which local activities", "marker:core_local_activity"),
    ("  of which patch markers", "marker:core_patch"), ("signals", "WORKFLOW_EXECUTION_SIGNALED"),
    ("search-attribute upserts", "UPSERT_WORKFLOW_SEARCH_ATTRIBUTES"), ("history events", "events"),
    ("history bytes", "history_bytes"), ("payload bytes", "payload_bytes"),
]


async def run(n: int, k: int, root: Path, pg: PrivatePostgres) -> None:
    metrics_port = free_port()
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_binary()), data_converter=pydantic_data_converter, ui=False,
        dev_server_log_level="error",
        dev_server_extra_args=["--db-filename", str(root / "temporal.db"), "--sqlite-pragma", "journal_mode=wal",
                               "--sqlite-pragma", "synchronous=normal", "--metrics-port", str(metrics_port),
                               *[a for sa in search_attribute_args() for a in ("--search-attribute", sa)]])
    server = ServerMetrics(metrics_port)
    cpu = CpuClock()
    cpu.add("bench process", psutil.Process())
    for child in psutil.Process().children(recursive=True):
        if "temporal" in child.name():
            cpu.add("temporal server", child)
    cpu.add("postgres", postmaster(pg.dir))
    poll = await psycopg.AsyncConnection.connect(conninfo(pg.url("bench-poll")), autocommit=True)
    worker: subprocess.Popen[bytes] | None = None
    try:
        settings = Settings(home=root, temporal_address=env.client.service_client.config.target_host,
                            database_url=Secret(pg.url("bench-submitter")),
                            task_queue=f"cost-{uuid.uuid4().hex[:8]}",
                            rate_limit_per_minute=10**7, database_pool_size=k + 5,
                            template_modules=["bench.templates.many_activities"])
        sem = asyncio.Semaphore(k)

        async def until(query: str, params: dict[str, Any], count: int) -> None:
            while True:
                row = await (await poll.execute(query, params)).fetchone()
                if row is not None and row[0] >= count:
                    return
                await asyncio.sleep(0.1)

        results: dict[str, tuple[collections.Counter[str], collections.Counter[str]]] = {}

        async def phase(name: str, body: Any, settle: Any) -> None:
            """Run ``body`` (returns the workflow ids to count), wait for ``settle``, diff the counters."""
            print(f"phase {name}", file=sys.stderr, flush=True)
            await asyncio.to_thread(pg.mark, name)
            await asyncio.sleep(METRICS_LAG)
            before = server.read()
            cpu_before = cpu.read()
            ids = await body()
            await settle()
            cpu_after = cpu.read()
            await asyncio.sleep(METRICS_LAG)
            after = server.read() + cpu_after
            before += cpu_before
            await asyncio.to_thread(pg.mark, f"{name}-end")
            results[name] = (await histories(env.client, ids), after - before)

        # B: a bare worker in this process
        bare_queue = f"cost-bare-{uuid.uuid4().hex[:8]}"
        async with Worker(env.client, task_queue=bare_queue, workflows=[bare.BareWorkflow], activities=[bare.mark],
                          workflow_runner=WORKFLOW_RUNNER):
            async def bare_one(key: str) -> str:
                async with sem:
                    wid = f"bare-{key}-{uuid.uuid4().hex}"
                    await env.client.start_workflow(bare.BareWorkflow.run, key, id=wid, task_queue=bare_queue)
                    return wid

            warm = await asyncio.gather(*(bare_one(f"w{i}") for i in range(10)))
            await asyncio.gather(*(env.client.get_workflow_handle(w).result() for w in warm))

            async def bare_body() -> list[str]:
                return list(await asyncio.gather(*(bare_one(f"b{i}") for i in range(n))))

            bare_ids: list[str] = []

            async def bare_body_keep() -> list[str]:
                bare_ids.extend(await bare_body())
                return bare_ids

            async def bare_settle() -> None:
                await asyncio.gather(*(env.client.get_workflow_handle(w).result() for w in bare_ids))

            await phase("B", bare_body_keep, bare_settle)

        async with open_runtime(settings) as rt:
            assert rt.temporal is not None
            log = root / "worker.log"
            worker = start_worker(settings.replace(database_url=Secret(pg.url("jobforge-worker"))),
                                  pg.url("jobforge-worker"), log)
            await wait_worker_started(worker, log)
            cpu.add("jobforge-worker", psutil.Process(worker.pid))
            triggers = TriggerService(rt.store.triggers, rt.temporal, settings, rt.registry, rt.flags)
            for tenant in ("warm-c", "cost-c"):
                await rt.gate.tenants.ensure_tenant(tenant)
            for tenant in ("warm-j", "cost-j"):
                await rt.gate.tenants.ensure_tenant(tenant)
                await triggers.create(TriggerSpec(tenant_id=tenant, name="every-order", kind=TriggerKind.EVENT,
                                                  event_pattern="order.*", template_key=TEMPLATE,
                                                  inputs=TEMPLATE_INPUTS))
            client = rt.client()

            async def raw_one(tenant: str, i: int) -> str:
                async with sem:
                    wid = f"raw-{tenant}-{i}-{uuid.uuid4().hex}"
                    await env.client.start_workflow(TEMPLATE, JobRun(tenant_id=tenant, template_key=TEMPLATE,
                                                                     inputs=TEMPLATE_INPUTS, actor="bench"),
                                                    id=wid, task_queue=settings.task_queue)
                    return wid

            async def submit_one(tenant: str, i: int) -> None:
                async with sem:
                    await client.submit_event(EventEnvelope(tenant_id=tenant, event_id=f"o{i}",
                                                            event_type="order.paid", payload={"order": i}))

            finished = "SELECT count(*) FROM runs WHERE tenant_id = %(t)s AND finished_at IS NOT NULL"
            archived = "SELECT count(*) FROM run_histories WHERE tenant_id = %(t)s"
            archiving = await rt.flags.is_enabled(Flag.REPLAY_PACK)  # off in bench/events.py's flag set
            routed = "SELECT count(*) FROM events WHERE tenant_id = %(t)s AND routed_at IS NOT NULL"

            def settle_for(tenant: str, events: bool) -> Any:
                async def settle() -> None:
                    if events:
                        await until(routed, {"t": tenant}, n)
                    await until(finished, {"t": tenant}, n)
                    if archiving:
                        await until(archived, {"t": tenant}, n)
                return settle

            # warm the worker and the submitter (first statements prepared, first router started)
            await asyncio.gather(*(raw_one("warm-c", i) for i in range(10)))
            await asyncio.gather(*(submit_one("warm-j", i) for i in range(10)))
            await until(finished, {"t": "warm-c"}, 10)
            await until(finished, {"t": "warm-j"}, 10)
            if archiving:
                await until(archived, {"t": "warm-j"}, 10)

            async def c_body() -> list[str]:
                return list(await asyncio.gather(*(raw_one("cost-c", i) for i in range(n))))

            await phase("C", c_body, settle_for("cost-c", False))

            async def j_body() -> list[str]:
                await asyncio.gather(*(submit_one("cost-j", i) for i in range(n)))
                return []

            await phase("JobForge", j_body, settle_for("cost-j", True))
            fired = [r[0] for r in await (await poll.execute(
                "SELECT run_workflow_id FROM trigger_fires WHERE tenant_id = 'cost-j'")).fetchall()]
            assert len(fired) == n, f"{len(fired)} fires for {n} events"
            runs = await histories(env.client, fired)
            router = await histories(env.client, [router_workflow_id("cost-j")])
            results["JobForge"] = (runs + router, results["JobForge"][1])
            results["JobForge: router share"] = (router, collections.Counter())

            # idle: what the worker and the server do with nothing to do, for a window of 10 s
            idle_seconds = 10.0

            async def idle_body() -> list[str]:
                await asyncio.sleep(idle_seconds)
                return []

            async def nothing() -> None:
                return None

            await phase("idle 10 s", idle_body, nothing)
    finally:
        await poll.close()
        if worker is not None:
            worker.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(worker.wait, 30)
            except subprocess.TimeoutExpired:
                worker.kill()
        await env.shutdown()
    sql_counts = pg.counts()
    print(f"raw: {results!r}\n{sql_counts!r}", file=sys.stderr, flush=True)  # kept if the report fails
    report(n, k, results, sql_counts)


def report(n: int, k: int, results: dict[str, tuple[collections.Counter[str], collections.Counter[str]]],
           sql_counts: dict[str, dict[str, collections.Counter[str]]]) -> None:
    cols = ["B", "C", "JobForge", "JobForge: router share", "idle 10 s"]

    def line(label: str, values: list[float], ratio: bool = True) -> None:
        cells = "".join(f"{v:>12.1f}" for v in values)
        extra = ""
        if ratio and values[0]:
            extra = f"   C/B {values[1] / values[0]:5.2f}   JobForge/B {values[2] / values[0]:5.2f}"
        print(f"  {label:38s}{cells}{extra}")

    print(f"run cost: {n} items per phase, {k} at a time; counts per item (idle: whole 10 s window)")
    print(f"  {'':38s}" + "".join(f"{c[:11]:>12s}" for c in cols))
    print(" Temporal history (fetch_history of each run; JobForge includes its share of the router's)")
    for label, key in ROWS:
        line(label, [results[c][0][key] / n if c in results else 0.0 for c in cols[:4]] + [0.0])
    print(" payload bytes in the history by event (marker: name and local activity type)")
    kinds = {key for c in cols if c in results for key in results[c][0] if key.startswith("payload:")}
    for key in sorted(kinds, key=lambda k: -results["JobForge"][0][k] if "JobForge" in results else 0):
        line("  " + key.removeprefix("payload:")[:36], [results[c][0][key] / n if c in results else 0.0
                                                         for c in cols[:4]] + [0.0], ratio=False)
    print(" Temporal server (dev server /metrics, difference over the phase)")
    ops: set[str] = set()
    for c in cols:
        if c in results:
            ops.update(results[c][1])
    for metric in ("service_requests", "persistence_requests"):
        total = [sum(v for key, v in results[c][1].items() if key.startswith(metric)) / (1 if c.startswith("idle")
                 else n) if c in results else 0.0 for c in cols]
        line(f"{metric} (all)", total)
    for op in sorted(ops):
        if not op.startswith("service_requests"):
            continue
        vals = [results[c][1][op] / (1 if c.startswith("idle") else n) if c in results else 0.0 for c in cols]
        if any(vals):
            line("  " + op.split(":", 1)[1], vals)
    print(f" CPU ms per item (load-dependent: load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} now)")
    for name in ("bench process", "jobforge-worker", "temporal server", "postgres"):
        vals = [results[c][1][f"cpu:{name}"] / 1e3 / n if c in results and not c.startswith("idle") else 0.0
                for c in cols]
        line(f"  {name}", vals, ratio=name != "jobforge-worker")
    all_cpu = [sum(v for key, v in results[c][1].items() if key.startswith("cpu:")) / 1e3 / n
               if c in results and not c.startswith("idle") else 0.0 for c in cols]
    line("  all processes", all_cpu)
    print(" PostgreSQL (private instance, log_statement=all; round trips include BEGIN/COMMIT)")
    apps = sorted({app for phase in sql_counts.values() for app in phase})
    for app in apps:
        for key in ("round_trips", "statements", "SELECT", "INSERT", "UPDATE", "DELETE", "WITH"):
            vals = [sql_counts.get(c, {}).get(app, collections.Counter())[key] / (1 if c.startswith("idle") else n)
                    for c in cols]
            if any(vals):
                line(f"{app}: {key}", vals, ratio=False)
    for phase in ("C", "JobForge"):
        for app, counter in sorted(sql_counts.get(phase, {}).items()):
            print(f" PostgreSQL statements per item, {phase}, {app}")
            for key, count in counter.most_common():
                if key.startswith("sql:"):
                    print(f"  {count / n:5.2f}  {key[4:]}")


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    n = int(args[0]) if args else 50
    k = int(args[1]) if len(args) > 1 else 10
    for flag in FLAGS:
        os.environ.setdefault(flag.value, "1")
    root = Path(tempfile.mkdtemp(prefix="jobforge-cost-"))
    os.chmod(root, 0o755)  # the postgres system user must reach its data directory
    pg = PrivatePostgres(root)
    try:
        pg.start()
        upgrade(pg.url("migrate"))
        started = time.perf_counter()
        asyncio.run(run(n, k, root, pg))
        print(f"  (took {time.perf_counter() - started:.0f} s of wall-clock on this machine)", file=sys.stderr)
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
