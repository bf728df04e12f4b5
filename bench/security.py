"""Security-gate benchmarks: payload validation and redaction against orjson.loads of the same 1 MB
document, and the gate's throughput with PostgreSQL-backed dedupe + rate limit + audit.

Run: ``.venv/bin/python bench/security.py`` (needs the local PostgreSQL of ENV-NOTES; set
``JOBFORGE_TEST_PG`` to another admin DSN). Prints one line per figure and a JSON summary. The CPU
figures use the C accelerator ``shared._native`` when it is built; ``JOBFORGE_NATIVE=0`` measures
the pure-Python fallback (the first line says which ran).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.security._accel import IMPLEMENTATION
from shared.security.limits import PayloadLimits, check_structure, parse_and_check
from shared.security.redaction import redact, redact_text

PG_ADMIN = os.environ.get("JOBFORGE_TEST_PG", "host=127.0.0.1 port=5432 user=postgres dbname=postgres")


def document(target: int = 1_000_000) -> Any:
    """A realistic ~1 MB event-like document: records with ids, names, tags, nested metadata."""
    rng = random.Random(7)
    first = ["ann", "bob", "chen", "dara", "emil", "fatima", "gus", "hana", "ivan", "jo", "kofi", "lena"]
    last = ["smith", "garcia", "nguyen", "okafor", "muller", "rossi", "tanaka", "silva", "cohen", "berg"]
    records = []
    size = 0
    while size < target:
        record = {"id": rng.randrange(10**9), "name": f"{rng.choice(first)} {rng.choice(last)}",
                  "active": rng.random() < 0.5, "score": rng.random(),
                  "tags": ["alpha", "beta", "gamma"][:rng.randint(0, 3)],
                  "meta": {"source": "checkout", "region": rng.choice(["eu", "us", "ap"]), "attempt": rng.randint(1, 5),
                           "note": " ".join(rng.choices(["order", "paid", "shipped", "late", "ok"], k=6))}}
        records.append(record)
        size += len(orjson.dumps(record)) + 1
    return {"event": "batch", "records": records}


def best(fn: Callable[[], object], repeat: int = 15) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def cpu_figures() -> dict[str, float]:
    doc = document()
    raw = orjson.dumps(doc)
    text = raw.decode()
    limits = PayloadLimits(max_bytes=2_000_000, max_array=100_000)
    parsed = orjson.loads(raw)  # the same document as the gate sees it: every string its own object
    loads = best(lambda: orjson.loads(raw))
    walk = best(lambda: check_structure(doc, limits))
    walk_parsed = best(lambda: check_structure(parsed, limits))
    full = best(lambda: parse_and_check(raw, limits))
    red_doc = best(lambda: redact(doc))
    red_text = best(lambda: redact_text(text))
    figures = {
        "document_bytes": len(raw),
        "orjson_loads_ms": loads * 1e3,
        "validation_ms": walk * 1e3,
        "validation_ratio": walk / loads,
        "validation_parsed_ratio": walk_parsed / loads,
        "parse_and_validate_ratio": full / loads,
        "redact_document_ms": red_doc * 1e3,
        "redact_document_ratio": red_doc / loads,
        "redact_text_ms": red_text * 1e3,
        "redact_text_ratio": red_text / loads,
    }
    print(f"1 MB document ({len(raw)} bytes): orjson.loads {loads * 1e3:.2f} ms; implementation: {IMPLEMENTATION}")
    print(f"  payload validation      {walk * 1e3:7.2f} ms  = {walk / loads:.2f}x loads (target <= 1.5x)")
    print(f"    of a parsed copy      {walk_parsed * 1e3:7.2f} ms  = {walk_parsed / loads:.2f}x loads")
    print(f"  parse + validation      {full * 1e3:7.2f} ms  = {full / loads:.2f}x loads")
    print(f"  redact(document)        {red_doc * 1e3:7.2f} ms  = {red_doc / loads:.2f}x loads (target <= 3x)")
    print(f"  redact_text(serialised) {red_text * 1e3:7.2f} ms  = {red_text / loads:.2f}x loads")
    return figures


async def gate_figures(events: int = 2000, concurrency: int = 16) -> dict[str, float]:
    import psycopg
    from psycopg import sql

    from shared.flags import Flag, FlagReader
    from shared.gate import Gate
    from shared.models import EventEnvelope
    from shared.security.principal import Principal
    from shared.settings import Settings
    from shared.store import create_engine
    from shared.store.migrate import upgrade
    from shared.templates import load_registry

    name = f"jobforge_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    engine = None
    try:
        await asyncio.to_thread(upgrade, url)
        settings = Settings(home=Path("/tmp") / name, rate_limit_per_minute=10**8)
        env = {flag.value: "1" for flag in (Flag.EVENTS, Flag.RATE_LIMITING, Flag.AUDIT_LOGGING,
                                            Flag.SECURITY_VALIDATION)}
        engine = create_engine(url, pool_size=concurrency)
        gate = Gate(engine, settings, FlagReader(None, env=env), load_registry(settings))
        caller = Principal(actor="bench", scopes=("events:write",), tenant_id="bench")
        payload = {"order": {"id": 1, "lines": [{"sku": "a", "qty": 2}] * 5}, "note": "paid"}
        sem = asyncio.Semaphore(concurrency)

        async def one(i: int) -> bool:
            async with sem:
                envelope = EventEnvelope(tenant_id="bench", event_id=f"e{i % (events // 2)}",
                                         event_type="order.paid", payload=payload)
                return (await gate.admit_event(envelope, caller)).receipt.duplicate

        await asyncio.gather(*(one(-i - 1) for i in range(50)))  # warm up
        started = time.perf_counter()
        duplicates = sum(await asyncio.gather(*(one(i) for i in range(events))))
        seconds = time.perf_counter() - started
        verdict = await gate.audit.verify("bench")
        print(f"gate (limits + rate limit + dedupe + audit on PostgreSQL, {concurrency} concurrent): "
              f"{events / seconds:.0f} checks/s; {duplicates} duplicates of {events}; audit chain "
              f"{'intact' if verdict.ok else 'BROKEN'} ({verdict.entries} entries)")
        return {"gate_checks_per_second": events / seconds, "gate_duplicates": duplicates,
                "audit_entries": verdict.entries, "audit_ok": float(verdict.ok)}
    finally:
        if engine is not None:
            await engine.dispose()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def main() -> None:
    figures = cpu_figures()
    figures.update(asyncio.run(gate_figures()))
    print(json.dumps({k: round(v, 3) for k, v in figures.items()}))


if __name__ == "__main__":
    main()
