"""Console page budget, measured in the browser on the dev stack.

`jobforge dev` (embedded PostgreSQL, Temporal dev server, a worker, the API) with one tenant holding
10,000 runs, 100,000 events (both spread over the last six hours, so the last hour's charts aggregate
about a sixth of them), 1,000 trigger fires and 5,000 audit entries. Headless Chromium (Debian's, driven
by Playwright) loads each page N times after a warm-up and reads, from the Navigation Timing API of each
load, the server's own time (the console's ``Server-Timing: app`` header) and the first contentful paint.

Baseline measured in the same run: the sign-in page, which reads nothing from the store. Printed per page:
server time p50/p95, p95 against the 100 ms budget and against the baseline's p95, and FCP p50/p95
against the 500 ms budget. ``--loads`` sets N (default 30).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from shared.settings import Secret

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jobforge.models import TriggerKind, TriggerSpec
from shared.security.audit import AuditFact, Decision
from shared.settings import Settings
from shared.store.paging import encode_cursor
from tests.support.procs import BIN, ROOT, env_with, free_port
from workers.console.reads import triggers as trigger_service
from workers.runtime import open_runtime
from workers.stack import StackState

SERVER_BUDGET_MS = 100.0
FCP_BUDGET_MS = 500.0
RUNS, EVENTS, FIRES, AUDIT = 10_000, 100_000, 1_000, 5_000
TENANT = "bench"
FLAGS = ("JOBFORGE_AUTOPILOT_JOBS_ENABLED", "JOBFORGE_EVENTS_ENABLED", "JOBFORGE_TRIGGERS_ENABLED",
         "JOBFORGE_AUDIT_LOGGING_ENABLED", "REPLAY_PACK_ENABLED", "JOBFORGE_MANIFESTS_ENABLED", "VERIFY_PACK_ENABLED")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
TIMING = """async () => {
  const nav = performance.getEntriesByType('navigation')[0];
  const timing = name => ((nav.serverTiming || []).find(t => t.name === name) || {}).duration;
  // the paint can come after the load event: wait for it (a page that never paints gives null)
  const fcp = await new Promise(resolve => {
    const seen = performance.getEntriesByName('first-contentful-paint')[0];
    if (seen) { resolve(seen.startTime); return; }
    new PerformanceObserver((list, observer) => {
      const entry = list.getEntriesByName('first-contentful-paint')[0];
      if (entry) { observer.disconnect(); resolve(entry.startTime); }
    }).observe({type: 'paint', buffered: true});
    setTimeout(() => resolve(null), 5000);
  });
  return {server: timing('app'), cpu: timing('cpu'), fcp, ttfb: nav.responseStart - nav.requestStart};
}"""

SEED_RUNS = """
INSERT INTO runs (run_id, workflow_id, tenant_id, template_key, status, trace_id, actor, idempotency_key, input_hash,
                  summary, error, created_at, updated_at, finished_at)
SELECT 'seed-' || i, 'jobforge/bench/seed/' || i, %(t)s,
       (ARRAY['autopilot.jobforge.healthcheck', 'autopilot.readylayer.verify_pack',
              'autopilot.keys.rotation'])[1 + i %% 3],
       (ARRAY['succeeded', 'succeeded', 'succeeded', 'succeeded', 'failed', 'rejected', 'cancelled',
              'running'])[1 + i %% 8],
       md5(i::text), 'seed', NULL, '', '{}'::jsonb, '',
       now() - (i * interval '6 hours' / %(n)s), now() - (i * interval '6 hours' / %(n)s),
       CASE WHEN i %% 8 = 7 THEN NULL
            ELSE now() - (i * interval '6 hours' / %(n)s) + (i %% 50) * interval '1 second' END
  FROM generate_series(1, %(n)s) AS i
"""
SEED_EVENTS = """
INSERT INTO events (tenant_id, event_id, event_type, trace_id, source_app, source_module, payload, occurred_at,
                    route_workflow_id, received_at, routed_at, routing, actor)
SELECT %(t)s, 'e-' || i, (ARRAY['order.paid', 'order.refunded', 'contract.signed', 'user.created'])[1 + i %% 4],
       md5(i::text), CASE WHEN i %% 97 = 0 THEN 'rare' ELSE (ARRAY['shop', 'settler', 'crm'])[1 + i %% 3] END,
       'bench', jsonb_build_object('n', i, 'card_token', 'tok_' || i), now() - (i * interval '6 hours' / %(n)s),
       'jobforge/bench/event/seed/' || i, now() - (i * interval '6 hours' / %(n)s),
       now() - (i * interval '6 hours' / %(n)s),
       jsonb_build_object('event_row_id', 0, 'matched', 1, 'fires', jsonb_build_array(jsonb_build_object(
           'trigger_name', 'on-order', 'verdict', 'dry_run', 'reasons', jsonb_build_array('dry-run mode'),
           'fire_id', i, 'run_workflow_id', NULL, 'start_error', ''))), 'sdk'
  FROM generate_series(1, %(n)s) AS i
"""
SEED_GATE = """
INSERT INTO event_gate_minutes (tenant_id, minute, duplicates, rate_limited)
SELECT %(t)s, date_trunc('minute', now()) - i * interval '1 minute', i %% 7, i %% 5 FROM generate_series(0, 359) AS i
ON CONFLICT DO NOTHING
"""
SEED_FIRES = """
INSERT INTO trigger_fires (tenant_id, trigger_id, trigger_name, fire_key, source, verdict, reasons, event_type,
                           event_id, inputs, run_workflow_id, start_error, fired_at)
SELECT %(t)s, %(trigger)s, 'on-order', 'seed-fire-' || i, 'event', 'dry_run', '["dry-run mode"]'::jsonb,
       'order.paid', 'e-' || i, '{}'::jsonb, NULL, '', now() - i * interval '10 seconds'
  FROM generate_series(1, %(n)s) AS i
"""


def start_dev(home: Path) -> tuple[subprocess.Popen[bytes], StackState, str]:
    env = env_with({"JOBFORGE_HOME": str(home), **dict.fromkeys(FLAGS, "1"),
                    "JOBFORGE_VERIFY_ALLOWED_ROOTS": str(ROOT / "examples")})
    log = home.parent / "dev.log"
    cmd = [str(BIN / "jobforge"), "dev", "--temporal-port", str(free_port()), "--ui-port", str(free_port()),
           "--pg-port", str(free_port()), "--api-port", str(free_port())]
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while (state := StackState.read(home / "state.json")) is None:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("jobforge dev did not start: " + log.read_text(errors="replace")[-2000:])
        time.sleep(0.1)
    return proc, state, (home / "console-operator-token").read_text().strip()


async def seed(state: StackState, home: Path) -> dict[str, str]:
    """The tenant's data; returns the ids of what the pages show."""
    settings = Settings(home=home, temporal_address=state.temporal_address,
                        database_url=Secret(state.database_url), verify_allowed_roots=[ROOT / "examples"])
    os.environ.update(dict.fromkeys(FLAGS, "1"))  # the in-process client's own flag pre-checks
    async with open_runtime(settings) as rt:
        await rt.gate.tenants.create_tenant(TENANT)
        key = (await rt.gate.tenants.create_key(TENANT, ["*:*"])).secret
        service = trigger_service(rt)
        trigger = await service.create(TriggerSpec(tenant_id=TENANT, name="on-order", kind=TriggerKind.EVENT,
                                                   template_key="autopilot.jobforge.healthcheck",
                                                   event_pattern="order.*"))
        await service.create(TriggerSpec(tenant_id=TENANT, name="nightly", kind=TriggerKind.CRON, cron="0 3 * * *",
                                         template_key="autopilot.jobforge.healthcheck"))
        client = rt.client()
        healthcheck = await client.request_job(TENANT, "autopilot.jobforge.healthcheck", {})
        await client.result(healthcheck)
        verify = await client.request_job(TENANT, "autopilot.readylayer.verify_pack",
                                          {"repo_path": str(ROOT / "examples" / "python-sample")})
        await client.result(verify)
        facts = [AuditFact(tenant_id=TENANT, actor="bench", action="bench.seed", resource=f"r{i}",
                           decision=Decision.ALLOW, reason="seeded") for i in range(AUDIT)]
        for start in range(0, AUDIT, 256):
            await asyncio.gather(*(rt.gate.audit.append(f) for f in facts[start:start + 256]))
    with psycopg.connect(state.database_url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(SEED_RUNS, {"t": TENANT, "n": RUNS})
        conn.execute(SEED_EVENTS, {"t": TENANT, "n": EVENTS})
        conn.execute(SEED_GATE, {"t": TENANT})
        conn.execute(SEED_FIRES, {"t": TENANT, "trigger": view_id(trigger), "n": FIRES})
        conn.execute("ANALYZE")
        mid_run = conn.execute("SELECT created_at, run_id FROM runs WHERE tenant_id = %s ORDER BY created_at DESC, "
                               "run_id DESC OFFSET 5000 LIMIT 1", (TENANT,)).fetchone()
        event_id = conn.execute("SELECT id FROM events WHERE tenant_id = %s AND event_id = 'e-500'",
                                (TENANT,)).fetchone()
    assert mid_run is not None and event_id is not None
    return {"key": key, "healthcheck": healthcheck.run_id, "verify": verify.run_id,
            "cursor": encode_cursor(mid_run[0], mid_run[1]), "event": str(event_id[0])}


def view_id(view: Any) -> str:
    return str(view.trigger.trigger_id)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def measure(base: str, ids: dict[str, str], operator_token: str, loads: int) -> list[tuple[str, dict[str, Any]]]:
    from playwright.async_api import async_playwright

    t = f"/ui/t/{TENANT}"
    tenant_pages = [
        ("runs", f"{t}/runs"), ("runs, status=failed", f"{t}/runs?status=failed"),
        ("runs, page at row 5,000", f"{t}/runs?after={ids['cursor']}"),
        ("runs, template + 24h charts", f"{t}/runs?template=autopilot.keys.rotation&window=24h"),
        ("run (healthcheck)", f"{t}/runs/{ids['healthcheck']}"), ("run (verify pack)", f"{t}/runs/{ids['verify']}"),
        ("events", f"{t}/events"), ("events, source=rare", f"{t}/events?source=rare"),
        ("event", f"{t}/events/{ids['event']}"), ("triggers", f"{t}/triggers"),
        ("trigger", f"{t}/triggers/on-order"), ("audit", f"{t}/audit"), ("audit verify (5,000)", f"{t}/audit/verify"),
    ]
    operator_pages = [("tenants", "/ui/tenants"), ("flags", "/ui/flags")]
    results: list[tuple[str, dict[str, Any]]] = []
    async with async_playwright() as driver:
        browser = await driver.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            for who, pages in (("key", [("sign-in (baseline)", "/ui/login"), *tenant_pages]),
                               ("operator", operator_pages)):
                context = await browser.new_context()
                page = await context.new_page()
                await page.goto(f"{base}/ui/login")
                if who == "key":
                    await page.fill("#api_key", ids["key"])
                    await page.click("button.primary")
                else:
                    await page.fill("#operator_token", operator_token)
                    await page.click("text=Sign in as operator")
                await page.wait_for_load_state()
                for name, path in pages:
                    if path == "/ui/login":  # the baseline: signed out, in a fresh context
                        measured = await browser.new_context()
                        target = await measured.new_page()
                    else:
                        measured, target = context, page
                    samples: dict[str, list[float]] = {"server": [], "cpu": [], "fcp": [], "ttfb": []}
                    for index in range(loads + 3):
                        response = await target.goto(base + path)
                        assert response is not None and response.status == 200, (name, response and response.status)
                        timing = await target.evaluate(TIMING)
                        if index >= 3:  # warm-up loads are not counted
                            for key in samples:
                                if timing[key] is not None:
                                    samples[key].append(float(timing[key]))
                    results.append((name, samples))
                    if measured is not context:
                        await measured.close()
                await context.close()
        finally:
            await browser.close()
    return results


def report(results: list[tuple[str, dict[str, Any]]], loads: int, load: tuple[float, float]) -> None:
    baseline = pct(results[0][1]["server"], 0.95)
    print(f"console page budget on the dev stack: tenant with {RUNS:,} runs, {EVENTS:,} events, {FIRES:,} fires, "
          f"{AUDIT:,} audit entries; {loads} loads per page in headless Chromium")
    print(f"machine load average {load[0]:.1f} before, {load[1]:.1f} after ({os.cpu_count()} cores): server wall "
          "times include waiting for a core, the API's CPU per page does not")
    print(f"baseline: the sign-in page (no store reads), server p95 {baseline:.1f} ms")
    print(f"{'page':30s} {'server p50':>10s} {'p95':>8s} {'p95/100ms':>9s} {'p95/base':>8s} {'CPU p50':>8s} "
          f"{'CPU p95':>8s} {'FCP p50':>8s} {'FCP p95':>8s} {'FCP/500ms':>9s}")
    worst_server = worst_fcp = worst_cpu = 0.0
    for name, samples in results:
        server, cpu, fcp = samples["server"], samples["cpu"], samples["fcp"]
        s50, s95, c50, c95 = pct(server, 0.5), pct(server, 0.95), pct(cpu, 0.5), pct(cpu, 0.95)
        f50, f95 = (pct(fcp, 0.5), pct(fcp, 0.95)) if fcp else (float("nan"), float("nan"))
        worst_server, worst_fcp = max(worst_server, s95 / SERVER_BUDGET_MS), max(worst_fcp, f95 / FCP_BUDGET_MS)
        worst_cpu = max(worst_cpu, c95 / SERVER_BUDGET_MS)
        print(f"{name:30s} {s50:8.1f}ms {s95:6.1f}ms {s95 / SERVER_BUDGET_MS:9.2f} {s95 / baseline:8.1f} "
              f"{c50:6.1f}ms {c95:6.1f}ms {f50:6.0f}ms {f95:6.0f}ms {f95 / FCP_BUDGET_MS:9.2f}")
    print(f"worst page: server p95 {worst_server:.2f} of the 100 ms budget "
          f"({'met' if worst_server <= 1 else 'MISSED'}; its CPU p95 {worst_cpu:.2f}), FCP p95 {worst_fcp:.2f} of the "
          f"500 ms budget ({'met' if worst_fcp <= 1 else 'MISSED'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", type=int, default=30)
    args = parser.parse_args()
    if not Path("/usr/bin/chromium").exists():
        raise SystemExit("bench/console.py needs Debian's chromium: apt-get install -y chromium")
    with tempfile.TemporaryDirectory(prefix="jobforge-console-bench-") as tmp:
        home = Path(tmp) / "home"
        proc, state, token = start_dev(home)
        try:
            ids = asyncio.run(seed(state, home))
            before = os.getloadavg()[0]
            results = asyncio.run(measure(state.api_url, ids, token, args.loads))
            after = os.getloadavg()[0]
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(90)
    report(results, args.loads, (before, after))


if __name__ == "__main__":
    main()
