"""Replay benchmark: export and verify of a ~1,000-event run vs. the bare Replayer on the same history.

In one run, on one Temporal dev server (in memory) and the machine's PostgreSQL (a throwaway database):

1. a run of the bench-only template ``bench.jobforge.many`` (``bench/templates/many_activities.py``,
   loaded through ``template_modules``; 280 trivial activities in batches of 32) by an in-process worker;
2. ``ReplayService.export`` of that run (store → canonical bundle on disk → bundle record), timed;
3. ``verify_bundle`` of the bundle (every hash, the input hash, the replay), timed;
4. baseline: ``temporalio.worker.Replayer`` on the same history (the bundle's, written as its own JSON
   file, as ``temporal workflow show -o json`` gives it): read the file, ``WorkflowHistory.from_json``,
   ``replay_workflow``; timed.

Rounds are interleaved; medians are printed with the ratios (target: verify <= 1.2x the bare Replayer).
Usage: python bench/replay.py [ACTIVITIES] [ROUNDS]
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson
import psycopg
from psycopg import sql
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from shared.settings import Secret

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared.flags import Flag  # noqa: E402 - importable once the checkout is on sys.path
from shared.logs import configure  # noqa: E402 - as above
from shared.replay.service import ReplayService, verify_bundle  # noqa: E402 - as above
from shared.search_attributes import search_attribute_args  # noqa: E402 - as above
from shared.settings import Settings  # noqa: E402 - as above
from shared.store.migrate import upgrade  # noqa: E402 - as above
from shared.templates import import_template_module  # noqa: E402 - as above
from workers.runtime import open_runtime  # noqa: E402 - as above
from workers.stack import temporal_binary  # noqa: E402 - as above
from workers.worker import build_workers  # noqa: E402 - as above
from workflows import discover  # noqa: E402 - as above

PG_ADMIN = os.environ.get("JOBFORGE_TEST_PG", "host=127.0.0.1 port=5432 user=postgres dbname=postgres")
TEMPLATE_MODULE = "bench.templates.many_activities"
KEY = "bench.jobforge.many"


def load_history(path: Path, workflow_id: str) -> WorkflowHistory:
    return WorkflowHistory.from_json(workflow_id, path.read_text())


async def bare_replay(path: Path, workflow_id: str, workflows: list[type[object]]) -> None:
    """What a user of the SDK alone does with a history file."""
    history = load_history(path, workflow_id)
    await Replayer(workflows=workflows, data_converter=pydantic_data_converter).replay_workflow(history)


async def timed(coro: object) -> float:
    started = time.perf_counter()
    await coro  # type: ignore[misc]
    return time.perf_counter() - started


async def bench(activities: int, rounds: int, home: Path, url: str) -> None:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_binary()), data_converter=pydantic_data_converter, ui=False,
        dev_server_log_level="error",
        dev_server_extra_args=[a for sa in search_attribute_args() for a in ("--search-attribute", sa)])
    try:
        settings = Settings(home=home, temporal_address=env.client.service_client.config.target_host,
                            database_url=Secret(url), task_queue=f"bench-{uuid.uuid4().hex[:8]}",
                            template_modules=[TEMPLATE_MODULE])
        workflows = discover([import_template_module(TEMPLATE_MODULE)])
        async with open_runtime(settings) as rt:
            workers = build_workers(rt)
            tasks = [asyncio.ensure_future(w.run()) for w in workers]
            try:
                client = rt.client()
                await rt.gate.tenants.ensure_tenant("bench")
                started = time.perf_counter()
                handle = await client.request_job("bench", KEY, {"activities": activities, "batch": 32})
                await client.result(handle)
                run_seconds = time.perf_counter() - started
            finally:
                await asyncio.gather(*(w.shutdown() for w in workers))
                await asyncio.gather(*tasks, return_exceptions=True)
            service = ReplayService(rt.store, rt.temporal, rt.flags)
            assert await service.replay.history(handle.run_id) is None
            capture = await timed(service.capture_history("bench", handle.workflow_id, handle.run_id))
            export: list[float] = []
            verify: list[float] = []
            bare: list[float] = []
            history_file = home / "history.json"
            for index in range(rounds):  # interleaved, so load from elsewhere hits all three alike
                out = home / f"bundle-{index}"
                export.append(await timed(service.export(handle.run_id, "bench", out)))
                if index == 0:
                    replay = orjson.loads((out / "replay.json").read_bytes())
                    history_file.write_bytes(orjson.dumps(replay["history"]))
                    events = len(replay["history"]["events"])
                    bundle_bytes = (out / "replay.json").stat().st_size
                    result = await verify_bundle(out, workflows)
                    assert result.ok, result
                verify.append(await timed(verify_bundle(out, workflows)))
                bare.append(await timed(bare_replay(history_file, handle.workflow_id, workflows)))
    finally:
        await env.shutdown()
    e, v, b = statistics.median(export), statistics.median(verify), statistics.median(bare)
    print(f"run: {activities} activities in batches of 32 -> {events} history events, {run_seconds:.2f}s; "
          f"replay.json {bundle_bytes / 1e6:.2f} MB; capture into the store {capture * 1e3:.0f} ms")
    print(f"medians of {rounds} interleaved rounds:")
    print(f"  bare Replayer (read file, from_json, replay) {b * 1e3:8.1f} ms")
    print(f"  jobforge replay verify (hashes+input+replay) {v * 1e3:8.1f} ms   ratio {v / b:.2f}x (target <= 1.2x)")
    print(f"  jobforge replay export (store -> bundle)     {e * 1e3:8.1f} ms   ratio {e / b:.2f}x")


def main() -> None:
    activities = int(sys.argv[1]) if len(sys.argv) > 1 else 280
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 7
    for flag in (Flag.AUTOPILOT_JOBS, Flag.REPLAY_PACK):
        os.environ.setdefault(flag.value, "1")
    configure("WARNING")  # the worker's per-run lines would drown the figures
    name = f"jobforge_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    try:
        upgrade(url)
        with tempfile.TemporaryDirectory(prefix="jobforge-bench-replay-") as tmp:
            asyncio.run(bench(activities, rounds, Path(tmp), url))
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


if __name__ == "__main__":
    main()
