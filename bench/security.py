"""Security-gate benchmarks: payload validation and redaction against orjson.loads of the same 1 MB
document; the same costs per byte for adversarial documents as a ratio to a plain one; the gate's
throughput with PostgreSQL-backed dedupe + rate limit + audit; and a well-behaved tenant's latency
on a ``jobforge-api`` process while four processes send it refused requests as fast as they can.

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
import re
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jobforge.errors import JobForgeError
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


def best(fn: Callable[[], object], repeat: int = 15, clock: Callable[[], float] = time.perf_counter) -> float:
    times = []
    for _ in range(repeat):
        started = clock()
        fn()
        times.append(clock() - started)
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


def _at_container_limit() -> dict[str, Any]:
    """About 1 MB holding just max_containers objects and arrays: nested lists, then plain records."""
    nested = functools.reduce(lambda inner, _: [inner], range(9), 0)
    plain = document(MB - 330_000)
    room = GATE_LIMITS.max_containers - count_containers(plain)
    return {**{f"d{i:05d}": nested for i in range(room // 9)}, **plain}


def count_containers(doc: Any) -> int:
    return len(re.findall(rb"[\[{]", orjson.dumps(doc)))  # the bench's documents hold no brackets in strings


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
        # one container per two bytes: refused by max_containers before it is parsed
        "deep": _many(functools.reduce(lambda inner, _: [inner], range(9), 0), "d"),
        # as many containers as max_containers allows, the rest of the megabyte plain
        "containers_at_limit": _at_container_limit(),
        "nul_at_end": {**document(MB - 100), "z": "x\u0000"},
        "surrogate_at_end": {**document(MB - 100), "z": "x\ud800"},
    }


def validate(raw: bytes) -> str:
    """What the HTTP gate does with a body before its own model: parse and limits, the limits of the
    payload inside, text PostgreSQL cannot store, secrets; a refusal is an answer like any other
    (its code is returned; "" when the body passes)."""
    try:
        value = parse_and_check(raw, BODY_LIMITS)
        check_payload(value, GATE_LIMITS, nbytes=len(raw))
        check_storable(value, "the inputs")
        secret = find_secret(value)
    except JobForgeError as refused:
        return refused.code
    return "secret_in_inputs" if secret is not None else ""


def _dumps(doc: Any) -> bytes:
    try:
        return orjson.dumps(doc)
    except TypeError:  # a lone surrogate: what a client's JSON encoder sends for it
        return json.dumps(doc, separators=(",", ":")).encode()


def adversarial_figures(repeat: int = 7) -> dict[str, float]:
    """Per generator, validation and redaction per byte as a ratio to a plain document of about the same
    bytes, each timed in this thread's CPU time (other processes on a busy machine are not charged to
    it), interleaved with the plain one, the least of ``repeat``."""
    plain_doc = document(MB)
    plain_raw = orjson.dumps(plain_doc)
    plain_text = plain_raw.decode()
    print(f"adversarial inputs (~1 MB each): cost per byte as a ratio to a plain {len(plain_raw)}-byte document "
          "(target <= 3x); validation = parse, limits, unstorable text, secrets")
    print(f"  {'generator':22} {'bytes':>9} {'validation':>10} {'redact_text':>11} {'redact':>7}  gate's answer")
    worst = dict.fromkeys(("validation", "redact_text", "redact"), (0.0, ""))
    for name, doc in adversarial_documents().items():
        raw = _dumps(doc)
        text = raw.decode()
        steps: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {
            "validation": (lambda raw=raw: validate(raw), lambda: validate(plain_raw)),
            "redact_text": (lambda text=text: redact_text(text), lambda: redact_text(plain_text)),
            "redact": (lambda doc=doc: redact(doc), lambda: redact(plain_doc)),
        }
        answer = validate(raw)
        # a body refused while it is parsed (too large, too many containers, not JSON) is never redacted
        unparsed = answer in ("payload_too_large", "payload_limit_exceeded", "invalid_request")
        ratios = {}
        for kind, (hostile, plain) in steps.items():
            hostile_times, plain_times = [], []
            for _ in range(repeat):
                hostile_times.append(best(hostile, 1, time.thread_time))
                plain_times.append(best(plain, 1, time.thread_time))
            ratios[kind] = (min(hostile_times) / len(raw)) / (min(plain_times) / len(plain_raw))
            if ratios[kind] > worst[kind][0] and (kind == "validation" or not unparsed):
                worst[kind] = (ratios[kind], name)
        print(f"  {name:22} {len(raw):9d} {ratios['validation']:9.2f}x {ratios['redact_text']:10.2f}x "
              f"{ratios['redact']:6.2f}x  {answer or 'passes'}{' (never redacted)' if unparsed else ''}")
    for kind, (ratio, name) in worst.items():
        print(f"  worst {kind:12} {ratio:5.2f}x ({name})")
    return {f"worst_{kind}_ratio": ratio for kind, (ratio, _) in worst.items()}


async def gate_figures(events: int = 2000, concurrency: int = 16) -> dict[str, float]:
    import psycopg
    from psycopg import sql

    from jobforge.models import EventEnvelope
    from shared.flags import Flag, FlagReader
    from shared.gate import Gate
    from shared.security.principal import Principal
    from shared.settings import Settings
    from shared.store import Store
    from shared.store.migrate import upgrade
    from shared.templates import load_registry

    name = f"jobforge_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    store = None
    try:
        await asyncio.to_thread(upgrade, url)
        settings = Settings(home=Path("/tmp") / name, rate_limit_per_minute=10**8)
        env = {flag.value: "1" for flag in (Flag.EVENTS, Flag.RATE_LIMITING, Flag.AUDIT_LOGGING,
                                            Flag.SECURITY_VALIDATION)}
        store = Store.from_url(url, pool_size=concurrency)
        gate = Gate(store, settings, FlagReader(None, env=env), load_registry(settings))
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
        if store is not None:
            await store.close()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


# -- a well-behaved tenant next to four attackers ------------------------------------------------

#: the issue's example: a job request whose inputs are ten 99,000-character strings of 'key' (under
#: every limit; scanned for secrets, then refused by the template's input model: 422)
HOSTILE_JOB = orjson.dumps({"template_key": "autopilot.jobforge.healthcheck",
                            "inputs": {f"s{i}": "key" * 33_000 for i in range(10)}})


#: refusals a key gets at once before it is paced (``Settings.refusal_pacing_burst``'s default)
PACING_BURST = 20


def attacker(url: str, key: str, stop: Any, counts: Any, answered: Any) -> None:
    """Send the hostile job request as fast as one client can until told to stop; report each answer's
    status, when it came (``time.monotonic``, one clock for every process) and how long it took."""
    import httpx

    seen: list[tuple[int, float, float]] = []
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    with httpx.Client(base_url=url, timeout=120) as client:
        while not stop.is_set():
            started = time.monotonic()
            try:
                status = client.post("/v1/jobs", content=HOSTILE_JOB, headers=headers).status_code
            except httpx.TransportError:
                status = 0
            seen.append((status, time.monotonic(), time.monotonic() - started))
            with answered.get_lock():
                answered.value += 1
    counts.put(seen)


def victim_latencies(url: str, key: str, n: int) -> list[float]:
    """``n`` sequential ``GET /v1/audit`` of a well-behaved tenant: each one's seconds."""
    import httpx

    times = []
    with httpx.Client(base_url=url, timeout=120, headers={"Authorization": f"Bearer {key}"}) as client:
        for _ in range(n):
            started = time.perf_counter()
            answer = client.get("/v1/audit", params={"limit": 20})
            times.append(time.perf_counter() - started)
            if answer.status_code != 200:
                raise RuntimeError(f"the well-behaved tenant got {answer.status_code}: {answer.text[:200]}")
    return times


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def neighbour_figures(requests: int = 150, attackers: int = 4, unpaced: bool = True) -> dict[str, float]:
    """A ``jobforge-api`` process (PostgreSQL of ENV-NOTES, a Temporal dev server on free ports): a
    tenant's ``GET /v1/audit`` latency idle, then while ``attackers`` processes send the hostile job
    request as fast as they can, first with the default rate limit (refusals turn into 429s before
    the body is read), then with a budget they never exhaust (every request is parsed, checked and
    refused by validation: the worst case). Both with the default refusal pacing (the attackers'
    refusals past its burst are held and their requests served one at a time), and, with ``unpaced``,
    again with pacing off as the reference. Also reports what the attackers got: their answers, how
    many came while the victim was measured and how long each took."""
    import multiprocessing
    import signal
    import socket
    import subprocess
    import tempfile

    import httpx
    import psycopg
    from psycopg import sql

    from shared.settings import Secret, Settings
    from shared.store.migrate import upgrade
    from workers.runtime import open_runtime
    from workers.stack import temporal_binary

    def free_port() -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])

    def wait_up(url: str, proc: subprocess.Popen[bytes], what: str) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{what} exited ({proc.returncode})")
            try:
                httpx.get(url, timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError(f"{what} did not come up")

    name = f"jobforge_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    db_url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    work = Path(tempfile.mkdtemp(prefix="jobforge-bench-"))
    temporal_port = free_port()
    procs: list[subprocess.Popen[bytes]] = []
    figures: dict[str, float] = {}
    try:
        upgrade(db_url)
        temporal = subprocess.Popen(
            [str(temporal_binary()), "server", "start-dev", "--port", str(temporal_port), "--headless",
             "--ui-port", str(free_port()), "--http-port", str(free_port()), "--metrics-port", str(free_port()),
             "--log-level", "error"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        procs.append(temporal)
        settings = Settings(home=work / "home", database_url=Secret(db_url),
                            temporal_address=f"127.0.0.1:{temporal_port}")

        async def keys() -> tuple[str, str]:
            async with open_runtime(settings, temporal=False) as rt:
                tenants = rt.gate.tenants
                await tenants.create_tenant("calm")
                await tenants.create_tenant("hostile")
                return ((await tenants.create_key("calm", ["audit:read"])).secret,
                        (await tenants.create_key("hostile", ["*:*"])).secret)

        calm_key, hostile_key = asyncio.run(keys())
        configs = [(label, per_minute, paced) for paced in ((True, False) if unpaced else (True,))
                   for label, per_minute in (("default rate limit", 100), ("unlimited budget", 10**9))]
        for label, per_minute, paced in configs:
            port = free_port()
            env = {k: v for k, v in os.environ.items() if not k.startswith("JOBFORGE_")}
            env.update({
                "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "JOBFORGE_HOME": str(work / "home"),
                "JOBFORGE_DATABASE_URL": db_url, "JOBFORGE_TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port}",
                "JOBFORGE_API_HOST": "127.0.0.1", "JOBFORGE_API_PORT": str(port), "JOBFORGE_LOG_LEVEL": "WARNING",
                "JOBFORGE_LOG_FORMAT": "json", "JOBFORGE_RATE_LIMIT_PER_MINUTE": str(per_minute),
                "JOBFORGE_SECURITY_VALIDATION_ENABLED": "1", "JOBFORGE_RATE_LIMITING_ENABLED": "1",
                "JOBFORGE_AUDIT_LOGGING_ENABLED": "1", "JOBFORGE_AUTOPILOT_JOBS_ENABLED": "1",
            })
            if not paced:
                env["JOBFORGE_REFUSAL_PACING_MAX_HOLD_SECONDS"] = "0"
            api = subprocess.Popen([sys.executable, "-m", "workers.api"], env=env, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=(work / f"api-{port}.log").open("wb"))
            procs.append(api)
            url = f"http://127.0.0.1:{port}"
            wait_up(url + "/healthz", api, "jobforge-api")
            victim_latencies(url, calm_key, 20)  # warm up
            cpu_before = cpu_seconds(api.pid)
            idle = victim_latencies(url, calm_key, requests)
            cpu_victim = (cpu_seconds(api.pid) - cpu_before) / requests
            ctx = multiprocessing.get_context("spawn")
            stop, counts, answered = ctx.Event(), ctx.Queue(), ctx.Value("i", 0)
            hostile = [ctx.Process(target=attacker, args=(url, hostile_key, stop, counts, answered))
                       for _ in range(attackers)]
            for proc in hostile:
                proc.start()
            try:
                # the attackers are up and past the first refusals, which pacing answers at once (its burst):
                # the victim is measured in the attack's steady state
                deadline = time.monotonic() + 120
                while answered.value < PACING_BURST + attackers and time.monotonic() < deadline:
                    time.sleep(0.1)
                time.sleep(1)
                cpu_before = cpu_seconds(api.pid)
                attackers_before = sum(cpu_seconds(proc.pid or 0) for proc in hostile)
                window = time.monotonic()
                loaded = victim_latencies(url, calm_key, requests)
                window_end = time.monotonic()
                cpu_loaded = cpu_seconds(api.pid) - cpu_before
                cpu_attackers = sum(cpu_seconds(proc.pid or 0) for proc in hostile) - attackers_before
            finally:
                stop.set()
                seen: list[tuple[int, float, float]] = []
                for _ in hostile:
                    seen += counts.get(True, 180)
                for proc in hostile:
                    proc.join(30)
            answers: dict[int, int] = {}
            for status, _, _ in seen:
                answers[status] = answers.get(status, 0) + 1
            # the attackers' answers while the victim was measured, and how long each took to come
            during_victim = [(status, took) for status, at, took in seen if window <= at <= window_end]
            attacker_waits = [took for _, took in during_victim] or [0.0]
            # idle again once the attackers are gone: the machine's other load drifts, so the idle figure is
            # the one of both idle stretches, before and after the attack
            idle += victim_latencies(url, calm_key, requests)
            api.send_signal(signal.SIGTERM)
            api.wait(30)
            ratio = percentile(loaded, 0.5) / percentile(idle, 0.5)
            during = window_end - window
            cpu_refused = max(cpu_loaded - cpu_victim * requests, 0.0) / max(len(during_victim), 1)
            print(f"well-behaved tenant's GET /v1/audit, {attackers} attackers sending the hostile job request, "
                  f"{label}{'' if paced else ', pacing off'}: p50 {percentile(idle, 0.5) * 1e3:.1f} ms idle -> "
                  f"{percentile(loaded, 0.5) * 1e3:.1f} ms "
                  f"= {ratio:.2f}x (target <= 2x); p95 {percentile(idle, 0.95) * 1e3:.1f} -> "
                  f"{percentile(loaded, 0.95) * 1e3:.1f} ms; attackers' answers {dict(sorted(answers.items()))} in "
                  f"all, {len(during_victim)} while the victim was measured ({len(during_victim) / during:.1f}/s, "
                  f"each after {percentile(attacker_waits, 0.5) * 1e3:.0f} ms p50, "
                  f"{max(attacker_waits) * 1e3:.0f} ms max); API CPU per victim request {cpu_victim * 1e3:.1f} ms, "
                  + (f"per refused request about {cpu_refused * 1e3:.1f} ms" if len(during_victim) >= 5 else
                     "per refused request: too few refusals to tell")
                  + f"; API busy {cpu_loaded / during:.0%}, the attackers' processes {cpu_attackers / during:.0%} "
                  "of a core while loaded")
            key = ("default" if per_minute == 100 else "unlimited") + ("" if paced else "_unpaced")
            figures.update({f"neighbour_{key}_idle_p50_ms": percentile(idle, 0.5) * 1e3,
                            f"neighbour_{key}_loaded_p50_ms": percentile(loaded, 0.5) * 1e3,
                            f"neighbour_{key}_p50_ratio": ratio,
                            f"neighbour_{key}_cpu_ms_per_refused": cpu_refused * 1e3,
                            f"neighbour_{key}_cpu_ms_per_victim_request": cpu_victim * 1e3,
                            f"neighbour_{key}_attacker_answers_per_s": len(during_victim) / during,
                            f"neighbour_{key}_attacker_wait_p50_ms": percentile(attacker_waits, 0.5) * 1e3,
                            f"neighbour_{key}_api_busy": cpu_loaded / during,
                            f"neighbour_{key}_attackers_busy": cpu_attackers / during})
        return figures
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def main() -> None:
    figures = cpu_figures()
    figures.update(adversarial_figures())
    figures.update(asyncio.run(gate_figures()))
    figures.update(neighbour_figures())
    figures["load_average_1m"] = os.getloadavg()[0]
    print(f"load average (1 min) at the end: {figures['load_average_1m']:.2f} on {os.cpu_count()} CPUs")
    print(json.dumps({k: round(v, 3) for k, v in figures.items()}))


if __name__ == "__main__":
    main()
