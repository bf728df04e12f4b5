"""Security-gate benchmarks: payload validation and redaction against orjson.loads of the same 1 MB
document, and the gate's throughput with PostgreSQL-backed dedupe + rate limit + audit.

Run: ``.venv/bin/python bench/security.py`` (needs the local PostgreSQL of ENV-NOTES; set
``JOBFORGE_TEST_PG`` to another admin DSN). Prints one line per figure and a JSON summary. The CPU
figures use the C accelerator ``shared._native`` when it is built; ``JOBFORGE_NATIVE=0`` measures
the pure-Python fallback (the first line says which ran).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
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

from shared.errors import JobForgeError
from shared.security._accel import IMPLEMENTATION
from shared.security.limits import (
    PayloadLimits,
    check_payload,
    check_storable,
    check_structure,
    parse_and_check,
)
from shared.security.redaction import find_secret, redact, redact_text

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


# -- adversarial inputs: cost per MB as a ratio to plain text of the same bytes --------------------

#: limits as the HTTP gate applies them (the default settings; the envelope adds one level)
GATE_LIMITS = PayloadLimits()
BODY_LIMITS = dataclasses.replace(GATE_LIMITS, max_depth=GATE_LIMITS.max_depth + 1)
MB = 1_000_000


def _strings(piece: str, total: int = MB, per: int = 99_000) -> dict[str, str]:
    """``piece`` repeated into strings of ``per`` characters (under max_string), about ``total`` bytes
    of JSON in all (escapes and UTF-8 make a character up to four bytes)."""
    one = (piece * (per // len(piece) + 1))[:per]
    return {f"s{i}": one for i in range(max(1, total // len(orjson.dumps(one))))}


def _many(value: Any, key: str = "k", total: int = MB) -> dict[str, Any]:
    """Many copies of a small ``value`` under distinct keys, ``total`` bytes in all (lists stay under max_array)."""
    size = len(orjson.dumps({f"{key}00000": value}))
    return {f"{key}{i:05d}": value for i in range(total // size)}


def adversarial_documents() -> dict[str, Any]:
    """Documents within the gate's limits built to pile up work in validation or redaction, ~1 MB each."""
    tokens = ["AKIA", "ghp_", "eyJ", "sk_live_", "xoxb-", "-----BEGIN ", "Bearer ", "://u:", "password=", "token: "]
    unicode_words = "clé 密码 пароль 🔑 "
    return {
        "keyword_dense": _strings("key"),  # the example: ten 99,000-character strings of 'key'
        "secret_words": _strings("password token secret api_key "),
        "separators": _strings("key="),
        "assignments": _strings("token=a "),
        "quoted_names": _strings('"a":'),
        "json_in_strings": _strings('{\\"api_key\\": \\"x\\", '),
        "escaped_quotes": _strings('\\"'),
        "backslashes": _strings("\\"),
        "yaml_lines": _strings("password: x\n  api_key: y\n"),
        "headers": _strings("Authorization: Bearer abc\nX-Api-Key: k\n"),
        "query_strings": _strings("?access_token=a&client_secret=b&"),
        "token_prefixes": _strings(" ".join(tokens) + " "),
        "jwt_like": _strings("eyJ-"),
        "pem_unterminated": {"s": "-----BEGIN RSA PRIVATE KEY-----" + "A" * 99_000, **_strings("A", MB - 100_000)},
        "url_users": _strings("postgres://u:"),
        "unicode": _strings(unicode_words),
        "unicode_astral": _strings("🔑key="),
        "long_keys": {("key" * 33_000)[:99_000 - i]: i for i in range(10)},
        "many_secretish_keys": _many("v", "keyboard_token_count_"),
        "many_small_strings": {"a": ["x"] * 10_000, **_many(["ab"] * 50, "l")},
        "many_numbers": _many([0] * 100, "n"),
        "deep": _many(functools.reduce(lambda inner, _: [inner], range(9), 0), "d"),
        "nul_at_end": {**document(MB - 100), "z": "x\u0000"},
        "surrogate_at_end": {**document(MB - 100), "z": "x\ud800"},
    }


def validate(raw: bytes) -> None:
    """What the HTTP gate does with a body before its own model: parse and limits, the limits of the
    payload inside, text PostgreSQL cannot store, secrets; a refusal is an answer like any other."""
    try:
        value = parse_and_check(raw, BODY_LIMITS)
        check_payload(value, GATE_LIMITS, nbytes=len(raw))
        check_storable(value, "the inputs")
        find_secret(value)
    except JobForgeError:
        pass


def _dumps(doc: Any) -> bytes:
    try:
        return orjson.dumps(doc)
    except TypeError:  # a lone surrogate: what a client's JSON encoder sends for it
        return json.dumps(doc, separators=(",", ":")).encode()


def adversarial_figures(repeat: int = 7) -> dict[str, float]:
    """Per generator, validation and redaction per byte as a ratio to a plain document of about the same
    bytes, each timed interleaved with the plain one (min of ``repeat``), so the machine's load weighs
    on both alike."""
    plain_doc = document(MB)
    plain_raw = orjson.dumps(plain_doc)
    plain_text = plain_raw.decode()
    print(f"adversarial inputs (~1 MB each): cost per byte as a ratio to a plain {len(plain_raw)}-byte document "
          "(target <= 3x); validation = parse, limits, unstorable text, secrets")
    print(f"  {'generator':22} {'bytes':>9} {'validation':>10} {'redact_text':>11} {'redact':>7}")
    worst = dict.fromkeys(("validation", "redact_text", "redact"), (0.0, ""))
    for name, doc in adversarial_documents().items():
        raw = _dumps(doc)
        text = raw.decode()
        steps: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {
            "validation": (lambda raw=raw: validate(raw), lambda: validate(plain_raw)),
            "redact_text": (lambda text=text: redact_text(text), lambda: redact_text(plain_text)),
            "redact": (lambda doc=doc: redact(doc), lambda: redact(plain_doc)),
        }
        ratios = {}
        for kind, (hostile, plain) in steps.items():
            hostile_times, plain_times = [], []
            for _ in range(repeat):
                hostile_times.append(best(hostile, 1))
                plain_times.append(best(plain, 1))
            ratios[kind] = (min(hostile_times) / len(raw)) / (min(plain_times) / len(plain_raw))
            if ratios[kind] > worst[kind][0]:
                worst[kind] = (ratios[kind], name)
        print(f"  {name:22} {len(raw):9d} {ratios['validation']:9.2f}x {ratios['redact_text']:10.2f}x "
              f"{ratios['redact']:6.2f}x")
    for kind, (ratio, name) in worst.items():
        print(f"  worst {kind:12} {ratio:5.2f}x ({name})")
    return {f"worst_{kind}_ratio": ratio for kind, (ratio, _) in worst.items()}


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
    figures.update(adversarial_figures())
    figures.update(asyncio.run(gate_figures()))
    print(json.dumps({k: round(v, 3) for k, v in figures.items()}))


if __name__ == "__main__":
    main()
