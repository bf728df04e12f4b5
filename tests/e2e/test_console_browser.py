"""The console in a real headless Chromium (Debian's package, driven by Playwright), against a real
``jobforge-api`` process and a real ``jobforge-worker`` process: sign-in, every page, a verify run's steps
as they happen, pause/resume/fire, a flag flip, the audit verify, and another tenant's key refused on every
page. Each page's screenshot is saved (``JOBFORGE_SCREENSHOTS``, else the test's temporary directory).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from temporalio.testing import WorkflowEnvironment

from jobforge.models import EventEnvelope, SafetyConfig, TriggerKind, TriggerSpec
from shared.flags import Flag, FlagReader
from shared.security.audit import Decision
from shared.settings import Settings
from shared.verify.models import TEMPLATE_KEY as VERIFY
from tests.support.procs import ROOT, env_with, free_port, wait_for
from tests.support.verify_repos import explicit_repo
from workers.console.reads import triggers as trigger_service
from workers.runtime import Runtime, open_runtime
from workers.stack import terminate

pytestmark = pytest.mark.e2e

CHROMIUM = Path(os.environ.get("JOBFORGE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
OPERATOR_TOKEN = "browser-operator-" + uuid.uuid4().hex + uuid.uuid4().hex
FLAGS = ("JOBFORGE_AUTOPILOT_JOBS_ENABLED", "JOBFORGE_EVENTS_ENABLED", "JOBFORGE_TRIGGERS_ENABLED",
         "JOBFORGE_AUDIT_LOGGING_ENABLED", "REPLAY_PACK_ENABLED", "JOBFORGE_MANIFESTS_ENABLED", "VERIFY_PACK_ENABLED")
HC = "autopilot.jobforge.healthcheck"
#: what every page must hold: a language, one h1, a main landmark, a label for every field, names for buttons
A11Y = """() => {
  const problems = [];
  if (!document.documentElement.lang) problems.push('no lang');
  if (!document.querySelector('main')) problems.push('no main landmark');
  const h1 = document.querySelectorAll('h1').length;
  if (h1 !== 1) problems.push(h1 + ' h1 headings');
  for (const el of document.querySelectorAll('input:not([type=hidden]), select, textarea')) {
    const byFor = el.id && document.querySelector('label[for="' + el.id + '"]');
    if (!byFor && !el.getAttribute('aria-label') && !el.closest('label')) problems.push('unlabelled ' + el.name);
  }
  for (const b of document.querySelectorAll('button, a')) {
    if (!b.textContent.trim() && !b.getAttribute('aria-label')) problems.push('nameless ' + b.outerHTML.slice(0, 60));
  }
  for (const svg of document.querySelectorAll('svg[role=img]')) {
    if (!svg.getAttribute('aria-labelledby')) problems.push('chart without a label');
  }
  return problems;
}"""


def chromium_or_skip() -> None:
    if CHROMIUM.exists():
        return
    if os.environ.get("CI") or os.environ.get("JOBFORGE_REQUIRE_BROWSER"):
        pytest.fail(f"the browser tests need Debian's chromium at {CHROMIUM} (.ci/run installs it)")
    pytest.skip(f"no chromium at {CHROMIUM}: `apt-get install -y chromium` runs the console's browser tests")


@dataclass
class Stack:
    base: str
    env: dict[str, str]
    home: Path
    repos: Path
    settings: Settings
    rt: Runtime
    tenant: str
    key: str
    other: str
    other_key: str
    shots: Path


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wanted = os.environ.get("JOBFORGE_SCREENSHOTS")
    path = Path(wanted) if wanted else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def processes(pg_url: str, temporal_env: WorkflowEnvironment,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A ``jobforge-api`` and a ``jobforge-worker`` process on a task queue of their own, the flags on."""
    chromium_or_skip()
    home = tmp_path_factory.mktemp("console-home")
    repos = tmp_path_factory.mktemp("console-repos")
    port = free_port()
    env = env_with({
        "JOBFORGE_TEMPORAL_ADDRESS": str(temporal_env.client.service_client.config.target_host),
        "JOBFORGE_DATABASE_URL": pg_url, "JOBFORGE_HOME": str(home), "JOBFORGE_LOG_FORMAT": "json",
        "JOBFORGE_TASK_QUEUE": f"console-{uuid.uuid4().hex[:8]}", "JOBFORGE_VERIFY_ALLOWED_ROOTS": str(repos),
        "JOBFORGE_CONSOLE_OPERATOR_TOKEN": OPERATOR_TOKEN, "JOBFORGE_TEMPORAL_UI_URL": "http://127.0.0.1:8233",
        "JOBFORGE_FLAG_OVERRIDE_TTL_SECONDS": "0.5", "JOBFORGE_WORKER_GRACEFUL_SHUTDOWN_SECONDS": "1",
        **dict.fromkeys(FLAGS, "1"),
    })
    procs = []
    for name, cmd in (("api", [sys.executable, "-m", "workers.api", "--port", str(port)]),
                      ("worker", [sys.executable, "-m", "workers.worker"])):
        with (home / f"{name}.log").open("ab") as out:
            procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, start_new_session=True))
    base = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(healthy, 30, "the API")
        wait_for(lambda: "worker_started" in (home / "worker.log").read_text(), 30, "the worker")
        yield {"base": base, "env": env, "home": home, "repos": repos}
    finally:
        for proc in procs:
            terminate(proc, 10)


@pytest.fixture(scope="module")
async def stack(processes: dict[str, Any], shots: Path) -> AsyncIterator[Stack]:
    """Two tenants with keys, a cron trigger (dry run), an event trigger, runs and events of the first."""
    env = processes["env"]
    settings = Settings(home=processes["home"], temporal_address=env["JOBFORGE_TEMPORAL_ADDRESS"],
                        database_url=env["JOBFORGE_DATABASE_URL"], task_queue=env["JOBFORGE_TASK_QUEUE"],
                        verify_allowed_roots=[processes["repos"]])
    saved = {flag: os.environ.get(flag) for flag in FLAGS}
    os.environ.update(dict.fromkeys(FLAGS, "1"))  # the in-process client's own flag pre-checks
    try:
        async with open_runtime(settings) as rt:
            suffix = uuid.uuid4().hex[:4]
            tenant, other = f"northwind-{suffix}", f"globex-{suffix}"
            keys = []
            for name in (tenant, other):
                await rt.gate.tenants.create_tenant(name)
                keys.append((await rt.gate.tenants.create_key(name, ["*:*"])).secret)
            service = trigger_service(rt)
            await service.create(TriggerSpec(tenant_id=tenant, name="nightly-report", kind=TriggerKind.CRON,
                                             cron="0 3 * * *", template_key=HC, safety=SafetyConfig(dry_run=True)))
            await service.create(TriggerSpec(tenant_id=tenant, name="on-order", kind=TriggerKind.EVENT,
                                             template_key=HC, event_pattern="order.*",
                                             input_pointers={"task_queues": "/payload/queues"}))
            client = rt.client()
            for index in range(3):
                await client.result(await client.request_job(tenant, HC, {}, actor="shop-backend"))
                receipt = await client.submit_event(EventEnvelope(
                    tenant_id=tenant, event_id=f"order-{index}", event_type="order.paid", source_app="shop",
                    payload={"queues": [settings.task_queue], "card_token": "tok_secret_4242"}))
                await client.wait_routed(receipt, 30)
            await service.fire(tenant, "nightly-report", actor="seed")
            for flag, value in saved.items():
                if value is None:
                    os.environ.pop(flag, None)
                else:
                    os.environ[flag] = value
            yield Stack(base=processes["base"], env=env, home=processes["home"], repos=processes["repos"],
                        settings=settings, rt=rt, tenant=tenant, key=keys[0], other=other, other_key=keys[1],
                        shots=shots)
    finally:
        for flag, value in saved.items():
            if value is None:
                os.environ.pop(flag, None)
            else:
                os.environ[flag] = value


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Any]:
    """One Chromium for the module (never downloaded: Debian's, by path)."""
    chromium_or_skip()
    from playwright.async_api import async_playwright

    async with async_playwright() as driver:
        launched = await driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Any) -> AsyncIterator[Any]:
    """A fresh browser context (no cookies) and page; JavaScript errors and CSP violations fail the test."""
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    tab = await context.new_page()
    tab.errors = []
    tab.on("pageerror", lambda exc: tab.errors.append(f"page error: {exc}"))
    tab.on("console", lambda msg: tab.errors.append(msg.text) if msg.type == "error" else None)
    try:
        yield tab
    finally:
        await context.close()


async def follow(page: Any, selector: str) -> None:
    """Click what navigates (a link, a form's button) and wait until the new page has loaded."""
    async with page.expect_navigation():
        await page.click(selector)


async def sign_in(page: Any, stack: Stack, key: str | None = None, operator: bool = False) -> None:
    await page.goto(f"{stack.base}/ui/")
    if operator:
        await page.fill("#operator_token", OPERATOR_TOKEN)
        await follow(page, "text=Sign in as operator")
    else:
        await page.fill("#api_key", key or stack.key)
        await follow(page, "button.primary")


async def shot(page: Any, stack: Stack, name: str) -> None:
    problems = await page.evaluate(A11Y)
    assert problems == [], (name, problems)
    await page.screenshot(path=str(stack.shots / f"{name}.png"), full_page=True)


def clean(page: Any) -> None:
    """No script error and no CSP violation so far."""
    assert page.errors == [], page.errors


async def test_sign_in_and_every_page(page: Any, stack: Stack) -> None:
    """Sign-in with a key lands on the tenant's runs; every page renders with its data, passes the markup checks,
    raises no script or CSP error; an operator sees tenants, flags and the fleet audit chain."""
    await page.goto(f"{stack.base}/ui/t/{stack.tenant}/runs")
    assert "/ui/login" in page.url
    await shot(page, stack, "01-sign-in")
    await sign_in(page, stack)
    assert page.url.endswith(f"/ui/t/{stack.tenant}/runs")
    assert await page.locator("h1").inner_text() == f"Runs of {stack.tenant}"
    assert await page.locator("#runs-rows tr").count() >= 6  # three requested, three from the events
    assert await page.locator("svg[role=img]").count() == 2
    assert "key" not in json.dumps(await page.evaluate("() => ({...localStorage, ...sessionStorage})"))
    assert await page.evaluate("() => document.cookie") == ""  # the session cookie is HttpOnly
    await shot(page, stack, "02-runs")

    await follow(page, "#runs-rows a >> nth=0")
    await page.wait_for_load_state()
    assert await page.locator("h1").inner_text() in (f"{HC} succeeded", f"{HC} running")
    for heading in ("Inputs", "Result", "Artifacts", "Manifest", "Provenance"):
        assert await page.locator("h2", has_text=heading).count() == 1, heading
    assert await page.get_attribute("a:has-text('Open in the Temporal UI')", "href") is not None
    await shot(page, stack, "03-run")

    await follow(page, "nav >> text=Events")
    assert await page.locator("table[aria-labelledby=events-table] tbody tr").count() >= 3
    assert "tok_secret_4242" not in await page.content()
    await shot(page, stack, "04-events")
    await follow(page, "table[aria-labelledby=events-table] tbody tr >> nth=0 >> a >> nth=0")
    assert await page.locator("h2", has_text="Routing").count() == 1
    payload = await page.locator("pre[aria-label=payload]").inner_text()
    assert "tok_secret_4242" not in payload and "[REDACTED]" in payload
    await shot(page, stack, "05-event")

    await follow(page, "nav >> text=Triggers")
    assert await page.locator("text=nightly-report").count() >= 1
    assert await page.locator("text=dry-run mode").count() >= 1  # the seeded manual fire of the dry-run trigger
    await shot(page, stack, "06-triggers")
    await follow(page, "a:has-text('on-order')")
    assert await page.locator("table[aria-labelledby=fires] tbody tr").count() >= 3
    await shot(page, stack, "07-trigger")

    await follow(page, "nav >> text=Audit")
    assert await page.locator("table[aria-labelledby=entries] tbody tr").count() >= 5
    await shot(page, stack, "08-audit")
    clean(page)

    await follow(page, "text=Sign out")
    await sign_in(page, stack, operator=True)
    assert page.url.endswith("/ui/tenants")
    assert await page.locator(f"a:has-text('{stack.tenant}')").count() >= 1
    await shot(page, stack, "09-tenants")
    await follow(page, "nav >> text=Flags")
    assert await page.locator("tr[id^=flag-]").count() == len(Flag)
    await shot(page, stack, "10-flags")
    clean(page)


async def test_pages_read_without_javascript(browser: Any, stack: Stack) -> None:
    """With JavaScript off, sign-in works and every tenant page shows its data (htmx only adds live updates)."""
    context = await browser.new_context(java_script_enabled=False)
    try:
        page = await context.new_page()
        await sign_in(page, stack)
        assert page.url.endswith(f"/ui/t/{stack.tenant}/runs")
        assert await page.locator("#runs-rows tr").count() >= 6
        run = await page.get_attribute("#runs-rows a >> nth=0", "href")
        for path, selector in ((run, "h2:has-text('Artifacts')"), (f"/ui/t/{stack.tenant}/events",
                                                                   "table[aria-labelledby=events-table] tbody tr"),
                               (f"/ui/t/{stack.tenant}/triggers", "a:has-text('nightly-report')"),
                               (f"/ui/t/{stack.tenant}/audit", "table[aria-labelledby=entries] tbody tr")):
            await page.goto(f"{stack.base}{path}")
            assert await page.locator(selector).count() >= 1, path
    finally:
        await context.close()


async def test_live_progress_of_a_verify_run(page: Any, stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """A verify run's steps appear on its page as they happen, without a reload: the first steps pass while
    the test step runs; once it passes the page shows the finished run with its timeline."""
    gate = f"release-{uuid.uuid4().hex[:6]}"
    repo = explicit_repo(stack.repos, f"shop-{uuid.uuid4().hex[:6]}", {
        "lint": "echo 'lint: 0 problems'", "typecheck": "echo 'types: ok'", "build": "echo built",
        "test": f"while [ ! -e {gate} ]; do sleep 0.05; done; echo '3 passed'"})
    for flag in FLAGS:
        monkeypatch.setenv(flag, "1")
    handle = await stack.rt.client().request_job(stack.tenant, VERIFY, {"repo_path": str(repo)}, actor="ci")
    await sign_in(page, stack)
    await page.goto(f"{stack.base}/ui/t/{stack.tenant}/runs/{handle.run_id}")
    await page.evaluate("() => { window.sameDocument = true; }")
    test_row = page.locator("#live-steps tr[data-step=test]")
    await test_row.locator(".s-running").wait_for(timeout=60_000)
    for step in ("lint", "typecheck", "build"):  # build runs beside test (one stage): it may pass just after
        await page.locator(f"#live-steps tr[data-step={step}] .s-passed").wait_for(timeout=30_000)
    assert await page.evaluate("() => window.sameDocument === true"), "the page reloaded instead of updating"
    assert await page.locator("#progress svg[role=img]").count() == 1  # the steps so far, as a timeline
    await shot(page, stack, "11-verify-live")
    # the steps run in the run's own copy of the repository (docs/verify-pack.md): release the test step there
    (stack.home / "verify" / "runs" / stack.tenant / handle.run_id / "tree" / gate).write_text("go")
    await page.locator("h1 .s-succeeded").wait_for(timeout=60_000)  # the page reloads itself once finished
    assert await page.locator("h2", has_text="Verify steps").count() == 1
    assert await page.locator("svg[aria-labelledby^=verify-steps]").count() == 1
    assert await page.locator("a:has-text('download')").count() >= 5  # the step logs, report and manifest
    await shot(page, stack, "12-verify-run")
    async with page.expect_download() as download:
        await page.click("a:has-text('Download the replay bundle')")
    assert (await download.value).suggested_filename == f"replay-{handle.run_id}.tar.gz"
    clean(page)


async def test_pause_resume_and_fire_now(page: Any, stack: Stack) -> None:
    """Pause and resume change the trigger and its Temporal Schedule; fire now goes through the safety gate
    (a dry-run record, audited as the trigger's decision); each request is audited with the key as actor."""
    await sign_in(page, stack)
    await page.goto(f"{stack.base}/ui/t/{stack.tenant}/triggers/nightly-report")
    service = trigger_service(stack.rt)
    await follow(page, "button:has-text('Pause')")
    await page.locator("h1 .s-paused").wait_for()
    assert (await service.show(stack.tenant, "nightly-report")).state == "paused"
    assert stack.rt.temporal is not None
    described = await stack.rt.temporal.get_schedule_handle(
        f"jobforge/{stack.tenant}/trigger/nightly-report").describe()
    assert described.schedule.state.paused
    await follow(page, "button:has-text('Resume')")
    await page.locator("h1 .s-active").wait_for()
    assert not (await stack.rt.temporal.get_schedule_handle(
        f"jobforge/{stack.tenant}/trigger/nightly-report").describe()).schedule.state.paused
    before = await page.locator("table[aria-labelledby=fires] tbody tr").count()
    await follow(page, "button:has-text('Fire now')")
    await page.locator("p.flash").wait_for()
    assert await page.locator("table[aria-labelledby=fires] tbody tr").count() == before + 1
    assert await page.locator("table[aria-labelledby=fires] tbody tr >> nth=0 >> .s-dry_run").count() == 1
    actions = [(e.action, e.actor) for e in await stack.rt.gate.audit.list(stack.tenant, limit=5)]
    actor = f"console:key:{stack.key.split('_')[1]}"
    assert ("triggers.pause", actor) in actions and ("triggers.resume", actor) in actions
    assert ("triggers.fire_now", actor) in actions and ("triggers.fire", "trigger:nightly-report") in actions
    clean(page)


async def test_flag_flip_is_the_kill_switch(page: Any, stack: Stack) -> None:
    """The operator turns a flag on through the confirmation page; the override is stored and read back by
    a fresh flag reader, the fleet audit chain records it, and removing the override restores the default."""
    await sign_in(page, stack, operator=True)
    await page.goto(f"{stack.base}/ui/flags")
    row = page.locator(f"#flag-{Flag.ACTION_JOBS.value}")
    await follow(page, f"#flag-{Flag.ACTION_JOBS.value} >> button:has-text('Turn on')")
    assert "Confirm" in await page.locator("h1").inner_text()
    assert Flag.ACTION_JOBS not in await stack.rt.store.flag_overrides()  # nothing until confirmed
    await page.fill("#reason", "browser test")
    await shot(page, stack, "13-flag-confirm")
    await follow(page, "button:has-text('Yes')")
    try:
        await page.locator("p.flash").wait_for()
        assert await row.locator("td >> nth=1").inner_text() == "store"
        assert await FlagReader(stack.rt.store.flag_overrides, 0).is_enabled(Flag.ACTION_JOBS)
        await follow(page, "nav >> text=Fleet audit")
        assert await page.locator("tbody tr >> nth=0 >> text=browser test").count() == 1
        await shot(page, stack, "14-fleet-audit")
        await page.goto(f"{stack.base}/ui/flags")
        await follow(page, f"#flag-{Flag.ACTION_JOBS.value} >> button:has-text('Remove override')")
        await follow(page, "button:has-text('Yes')")
        await page.locator("p.flash").wait_for()
        assert await row.locator("td >> nth=1").inner_text() == "default"  # not in the API's environment
    finally:
        await stack.rt.store.delete_flag_override(Flag.ACTION_JOBS)
    clean(page)


async def test_audit_verify_names_the_first_broken_entry(page: Any, stack: Stack) -> None:
    """Verify says intact; after an entry is edited in PostgreSQL it names that entry, and its link shows the
    entry highlighted."""
    tenant = f"audited-{uuid.uuid4().hex[:6]}"
    await stack.rt.gate.tenants.create_tenant(tenant)
    key = (await stack.rt.gate.tenants.create_key(tenant, ["audit:read", "runs:read"])).secret
    flags = {**await stack.rt.gate.flag_values(), Flag.AUDIT_LOGGING: True}
    for index in range(4):
        await stack.rt.gate.record(flags, tenant, "shop-backend", "orders.export", f"batch-{index}",
                                   Decision.ALLOW)
    await sign_in(page, stack, key)
    await page.goto(f"{stack.base}/ui/t/{tenant}/audit")
    await follow(page, "button:has-text('Verify the chain')")
    assert "Intact" in await page.locator("[role=status]").inner_text()
    with psycopg.connect(stack.env["JOBFORGE_DATABASE_URL"].replace("+psycopg", "")) as conn:
        conn.execute("UPDATE audit_log SET resource = 'batch-x' WHERE tenant_id = %s AND seq = 3", (tenant,))
    await follow(page, "button:has-text('Verify the chain')")
    verdict = await page.locator("[role=status]").inner_text()
    assert "Broken" in verdict and "entry 3" in verdict
    await shot(page, stack, "15-audit-verify")
    await follow(page, "a:has-text('entry 3')")
    assert await page.locator("tr#seq-3.broken").is_visible()
    clean(page)


async def test_another_tenants_key_is_refused_on_every_page(page: Any, stack: Stack) -> None:
    """Signed in with the other tenant's key, each page of the first tenant answers 403, each of its objects
    under the other tenant's own path 404, and the operator pages 403."""
    run = (await stack.rt.store.page_runs(stack.tenant)).items[0]
    event = (await stack.rt.gate.events.page_events(stack.tenant)).items[0]
    artifact_run = next((r for r in (await stack.rt.store.page_runs(stack.tenant, limit=200)).items
                         if r.template_key == VERIFY), run)
    artifacts = await stack.rt.store.list_artifacts(stack.tenant, artifact_run.run_id)
    objects = [f"runs/{run.run_id}", f"runs/{run.run_id}/progress", f"runs/{run.run_id}/replay",
               f"run?id={run.workflow_id}", f"events/{event.id}", "triggers/on-order", "triggers/nightly-report"]
    if artifacts:
        objects.append(f"runs/{artifact_run.run_id}/artifacts/{artifacts[0].id}")
    await sign_in(page, stack, stack.other_key)
    for path in ["", "runs", "runs/rows", "events", "triggers", "audit", "audit/verify", *objects]:
        response = await page.goto(f"{stack.base}/ui/t/{stack.tenant}/{path}".rstrip("/"))
        assert response is not None and response.status == 403, (path, response and response.status)
        assert "another tenant" in await page.locator("[role=alert]").inner_text(), path
    for path in objects:
        response = await page.goto(f"{stack.base}/ui/t/{stack.other}/{path}")
        assert response is not None and response.status == 404, (path, response and response.status)
    for path in ("flags", "tenants", "fleet/audit", "fleet/audit/verify"):
        response = await page.goto(f"{stack.base}/ui/{path}")
        assert response is not None and response.status == 403, path
    await shot(page, stack, "16-denied")
    await page.goto(f"{stack.base}/ui/t/{stack.other}/triggers")
    for action in ("pause", "fire"):
        answer = await page.evaluate(
            """async ([url, token]) => (await fetch(url, {method: 'POST',
               body: new URLSearchParams({csrf_token: token}),
               headers: {'Content-Type': 'application/x-www-form-urlencoded'}})).status""",
            [f"{stack.base}/ui/t/{stack.tenant}/triggers/nightly-report/{action}",
             await page.get_attribute("input[name=csrf_token]", "value")])
        assert answer == 403, action
    assert (await trigger_service(stack.rt).show(stack.tenant, "nightly-report")).trigger.enabled

