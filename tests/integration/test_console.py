"""The console over HTTP (in process): sign-in, sessions, CSRF, tenancy and scopes, each page's data."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest

from jobforge.errors import RateLimited
from jobforge.models import EventEnvelope, RunStatus, TriggerKind, TriggerSpec
from shared.flags import Flag, FlagReader
from shared.kill_switch import FLEET_CHAIN, change_override
from shared.security.audit import Decision
from shared.security.principal import Principal
from shared.settings import Secret, Settings
from shared.store.sessions import digest
from workers.api import create_app
from workers.console.reads import triggers as trigger_service
from workers.runtime import Runtime

pytestmark = pytest.mark.integration

HC = "autopilot.jobforge.healthcheck"
OPERATOR_TOKEN = "op-" + "x" * 40


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.replace(console_operator_token=Secret(OPERATOR_TOKEN),
                                       temporal_ui_url="http://temporal-ui.test:8233",
                                       rate_limit_per_minute=3)


@pytest.fixture
def flags_on(monkeypatch: pytest.MonkeyPatch) -> None:
    for flag in (Flag.AUTOPILOT_JOBS, Flag.AUDIT_LOGGING, Flag.EVENTS, Flag.TRIGGERS, Flag.REPLAY_PACK,
                 Flag.MANIFESTS):
        monkeypatch.setenv(flag.value, "1")


@pytest.fixture
async def http(runtime: Runtime, flags_on: None) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(runtime.settings, runtime)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://console.test") as client:
        yield client


async def tenant_key(rt: Runtime, scopes: list[str] | None = None) -> tuple[str, str]:
    tenant = f"c{uuid.uuid4().hex[:10]}"
    await rt.gate.tenants.create_tenant(tenant)
    issued = await rt.gate.tenants.create_key(tenant, scopes or ["*:*"])
    return tenant, issued.secret


async def sign_in(http: httpx.AsyncClient, **fields: str) -> httpx.Response:
    """The sign-in form as a browser sends it: the login CSRF value from the page, the cookie it set."""
    http.cookies.clear()
    form = await http.get("/ui/login")
    token = re.search(r'name="login_csrf" value="([^"]+)"', form.text)
    assert token, form.text
    return await http.post("/ui/login", data={"login_csrf": token[1], **fields})


def csrf_of(page: httpx.Response) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, page.text[:500]
    return found[1]


async def test_key_sign_in_sets_a_guarded_session_cookie_and_never_keeps_the_key(
        runtime: Runtime, http: httpx.AsyncClient) -> None:
    """A key signs in (303 to its runs); the cookie is HttpOnly, SameSite=Strict, scoped to /ui, holds no part of
    the key, and the store keeps only its digest; a wrong key, a missing login token and a revoked key are
    refused."""
    tenant, key = await tenant_key(runtime)
    answer = await sign_in(http, api_key=key)
    assert answer.status_code == 303 and answer.headers["location"] == f"/ui/t/{tenant}/runs"
    cookie = next(h for h in answer.headers.get_list("set-cookie") if h.startswith("jobforge_console="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
    value = cookie.split(";")[0].split("=", 1)[1]
    secret = key.split("_", 2)[2]  # jfk_<key id>_<secret>; the secret may hold "_" itself
    assert secret not in cookie and key.split("_")[1] not in value
    url = runtime.settings.database_url_value()
    assert url is not None
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        stored = conn.execute("SELECT id_sha256, key_id FROM console_sessions WHERE tenant_id = %s",
                              (tenant,)).fetchall()
    assert stored == [(digest(value), key.split("_")[1])]
    page = await http.get(f"/ui/t/{tenant}/runs")
    assert page.status_code == 200 and f"Runs of {tenant}" in page.text
    assert "no-store" in page.headers["cache-control"] and "frame-ancestors 'none'" in \
        page.headers["content-security-policy"] and page.headers["server-timing"].startswith("app;dur=")

    wrong = await sign_in(http, api_key="jfk_000000000000_" + "A" * 43)
    assert wrong.status_code == 401 and "not accepted" in wrong.text
    no_token = await http.post("/ui/login", data={"api_key": key})
    assert no_token.status_code == 403

    await sign_in(http, api_key=key)
    await runtime.gate.tenants.revoke_key(key.split("_")[1])
    after = await http.get(f"/ui/t/{tenant}/runs")
    assert after.status_code == 303 and after.headers["location"].startswith("/ui/login")


async def test_every_page_denies_another_tenants_key(runtime: Runtime, http: httpx.AsyncClient, worker: None) -> None:
    """Signed in as tenant B, every page of tenant A answers 403, every A object under B's path 404, and the
    operator pages 403; A's own pages answer 200."""
    tenant_a, key_a = await tenant_key(runtime)
    tenant_b, key_b = await tenant_key(runtime)
    handle = await runtime.client().request_job(tenant_a, HC, {}, actor="test")
    await runtime.client().result(handle)
    service = trigger_service(runtime)
    await service.create(TriggerSpec(tenant_id=tenant_a, name="on-a", kind=TriggerKind.EVENT, template_key=HC,
                                     event_pattern="a.*"))
    receipt = await runtime.client().submit_event(EventEnvelope(tenant_id=tenant_a, event_id="e1",
                                                                event_type="a.b"))
    event = None
    for _ in range(100):
        page = await runtime.gate.events.page_events(tenant_a)
        if page.items:
            event = page.items[0]
            break
        await asyncio.sleep(0.05)
    assert event is not None and receipt.trace_id
    run = f"runs/{handle.run_id}"
    pages = ["runs", "runs/rows", f"run?id={handle.workflow_id}", run, f"{run}/progress", f"{run}/replay",
             f"{run}/artifacts/1", "events", f"events/{event.id}", "triggers", "triggers/on-a", "audit",
             "audit/verify", ""]
    await sign_in(http, api_key=key_a)
    for path in [*pages[:-4], "events", "triggers/on-a", "audit", "audit/verify"]:
        if "artifacts" in path or "replay" in path:
            continue
        own = await http.get(f"/ui/t/{tenant_a}/{path}")
        assert own.status_code in (200, 303), (path, own.status_code, own.text[:300])
    await sign_in(http, api_key=key_b)
    for path in pages:
        foreign = await http.get(f"/ui/t/{tenant_a}/{path}".rstrip("/"))
        assert foreign.status_code == 403, (path, foreign.status_code)
        assert "another tenant" in foreign.text
    for path in pages[2:-1]:
        if path in ("events", "triggers", "audit", "audit/verify"):
            continue
        mine = await http.get(f"/ui/t/{tenant_b}/{path}")
        assert mine.status_code == 404, (path, mine.status_code, mine.text[:300])
    for path in ("/ui/flags", "/ui/tenants", "/ui/fleet/audit", "/ui/fleet/audit/verify"):
        assert (await http.get(path)).status_code == 403, path
    page = await http.get(f"/ui/t/{tenant_b}/runs")
    for action in ("pause", "resume", "fire"):
        forged = await http.post(f"/ui/t/{tenant_a}/triggers/on-a/{action}", data={"csrf_token": csrf_of(page)})
        assert forged.status_code == 403, action
    assert (await service.show(tenant_a, "on-a")).trigger.enabled


async def test_scopes_limit_pages_as_the_api_does(runtime: Runtime, http: httpx.AsyncClient) -> None:
    """A key with runs:read alone reads runs but not events, triggers, audit or artifacts (403 naming the scope)."""
    tenant, key = await tenant_key(runtime, ["runs:read"])
    await sign_in(http, api_key=key)
    assert (await http.get(f"/ui/t/{tenant}/runs")).status_code == 200
    for path, scope in (("events", "events:read"), ("triggers", "triggers:read"), ("audit", "audit:read")):
        denied = await http.get(f"/ui/t/{tenant}/{path}")
        assert denied.status_code == 403 and scope in denied.text, path


async def test_state_changing_forms_need_the_session_csrf_token_and_same_origin(
        runtime: Runtime, http: httpx.AsyncClient, worker: None) -> None:
    """Pause without a token, with a wrong token, or from another origin is refused (403) and
    changes nothing; with the token it pauses the trigger, audited with the key as actor."""
    tenant, key = await tenant_key(runtime)
    service = trigger_service(runtime)
    await service.create(TriggerSpec(tenant_id=tenant, name="t1", kind=TriggerKind.EVENT, template_key=HC,
                                     event_pattern="x.*"))
    await sign_in(http, api_key=key)
    page = await http.get(f"/ui/t/{tenant}/triggers/t1")
    token = csrf_of(page)
    url = f"/ui/t/{tenant}/triggers/t1/pause"
    assert (await http.post(url, data={})).status_code == 403
    wrong = ("y" if token[0] == "x" else "x") + token[1:]
    assert (await http.post(url, data={"csrf_token": wrong})).status_code == 403
    assert (await http.post(url, data={"csrf_token": token},
                            headers={"Origin": "http://evil.test"})).status_code == 403
    assert (await http.post(url, data={"csrf_token": token},
                            headers={"Sec-Fetch-Site": "cross-site"})).status_code == 403
    assert (await service.show(tenant, "t1")).trigger.enabled
    done = await http.post(url, data={"csrf_token": token}, headers={"Origin": "http://console.test"})
    assert done.status_code == 303
    assert not (await service.show(tenant, "t1")).trigger.enabled
    entries = await runtime.gate.audit.list(tenant, limit=5)
    assert entries[0].action == "triggers.pause" and entries[0].actor == f"console:key:{key.split('_')[1]}"


async def test_operator_sign_in_needs_the_configured_token(runtime: Runtime, http: httpx.AsyncClient) -> None:
    """The operator token signs in to every tenant and the flags; a wrong token is refused; a session opened
    with a token that has since changed ends."""
    wrong = await sign_in(http, operator_token="nope" * 10)
    assert wrong.status_code == 401
    ok = await sign_in(http, operator_token=OPERATOR_TOKEN)
    assert ok.status_code == 303 and ok.headers["location"] == "/ui/tenants"
    tenant, _ = await tenant_key(runtime)
    assert tenant in (await http.get("/ui/tenants")).text
    assert (await http.get(f"/ui/t/{tenant}/runs")).status_code == 200
    picked = await http.get("/ui/tenants", params={"tenant": tenant})
    assert picked.status_code == 303 and picked.headers["location"] == f"/ui/t/{tenant}/runs"
    for path in ("/ui/tenants?tenant=acem-never", "/ui/t/acem-never"):  # a mistyped tenant is not an empty one
        missing = await http.get(path)
        assert missing.status_code == 404 and "no tenant &#39;acem-never&#39;" in missing.text, missing.text[:500]
    assert (await http.get("/ui/flags")).status_code == 200
    runtime.settings = runtime.settings.replace(console_operator_token=Secret("n" * 40))
    assert (await http.get("/ui/flags")).status_code == 303


async def test_operator_sign_in_is_off_without_a_token(runtime: Runtime, flags_on: None) -> None:
    """Without JOBFORGE_CONSOLE_OPERATOR_TOKEN the sign-in page offers no operator form and refuses one."""
    runtime.settings = runtime.settings.replace(console_operator_token=None)
    app = create_app(runtime.settings, runtime)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://console.test") as http:
        assert "operator_token" not in (await http.get("/ui/login")).text
        refused = await sign_in(http, operator_token=OPERATOR_TOKEN)
        assert refused.status_code == 401 and "off" in refused.text


async def test_flag_flip_asks_to_confirm_is_audited_and_reaches_readers(runtime: Runtime,
                                                                        http: httpx.AsyncClient) -> None:
    """Turning a flag off shows a confirmation first (nothing changes); confirmed, the override is stored with
    the operator as actor, a fleet audit entry records before/after, and a fresh flag reader sees it."""
    await sign_in(http, operator_token=OPERATOR_TOKEN)
    token = csrf_of(await http.get("/ui/flags"))
    asked = await http.post(f"/ui/flags/{Flag.EVENTS.value}", data={"csrf_token": token, "action": "off"})
    assert asked.status_code == 200 and "Confirm" in asked.text
    assert Flag.EVENTS not in await runtime.store.flag_overrides()
    done = await http.post(f"/ui/flags/{Flag.EVENTS.value}",
                           data={"csrf_token": token, "action": "off", "confirm": "yes", "reason": "incident 7"})
    assert done.status_code == 303
    try:
        reader = FlagReader(runtime.store.flag_overrides, 0)
        assert not await reader.is_enabled(Flag.EVENTS)
        entry = (await runtime.gate.audit.list(FLEET_CHAIN, limit=1))[0]
        assert entry.action == "flags.set" and entry.resource == Flag.EVENTS.value and entry.reason == "incident 7"
        assert entry.details["before"]["enabled"] is True and entry.details["after"]["enabled"] is False
        assert (await runtime.gate.audit.verify(FLEET_CHAIN)).ok
        assert "incident 7" in (await http.get("/ui/fleet/audit")).text
    finally:
        await runtime.store.delete_flag_override(Flag.EVENTS)


async def test_audit_verify_names_the_first_broken_entry(runtime: Runtime, http: httpx.AsyncClient) -> None:
    """An intact chain verifies; after one row's reason is edited in PostgreSQL, verify names that entry and
    links to the page that shows it highlighted."""
    tenant, key = await tenant_key(runtime)
    await sign_in(http, api_key=key)  # the sign-in is the chain's first entry
    flags = await runtime.gate.flag_values()
    for index in range(3):
        await runtime.gate.record(flags, tenant, "test", "test.action", f"r{index}",
                                  Decision.ALLOW)
    assert "Intact: 4 entries" in (await http.get(f"/ui/t/{tenant}/audit/verify")).text
    url = runtime.settings.database_url_value()
    assert url is not None
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        conn.execute("UPDATE audit_log SET reason = 'edited' WHERE tenant_id = %s AND seq = 2", (tenant,))
    page = await http.get(f"/ui/t/{tenant}/audit/verify")
    assert "Broken" in page.text and "entry 2</a>" in page.text
    linked = await http.get(f"/ui/t/{tenant}/audit?before=3&broken=2")
    assert re.search(r'<tr id="seq-2" class="broken">', linked.text)


async def test_runs_filters_and_keyset_pages(runtime: Runtime, http: httpx.AsyncClient) -> None:
    """Pages of 50 walk every run exactly once, newest first; status, template, trace and time filters narrow
    the rows; a forged cursor is a readable error, not a 500."""
    tenant, key = await tenant_key(runtime)
    base = datetime.now(UTC) - timedelta(hours=1)
    url = runtime.settings.database_url_value()
    assert url is not None
    with psycopg.connect(url.replace("+psycopg", "")) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO runs (run_id, workflow_id, tenant_id, template_key, status, trace_id, actor, input_hash, "
            "summary, error, created_at, finished_at) VALUES (%s, %s, %s, %s, %s, %s, 'seed', '', '{}', '', %s, %s)",
            [(f"{tenant}-r{i:03d}", f"wf-{tenant}-{i}", tenant, HC if i % 3 else "other.template",
              "failed" if i % 10 == 0 else "succeeded", f"trace-{i % 7}", base + timedelta(seconds=i),
              base + timedelta(seconds=i, milliseconds=400)) for i in range(120)])
    await sign_in(http, api_key=key)
    seen: list[str] = []
    cursor = ""
    while True:
        page = await http.get(f"/ui/t/{tenant}/runs", params={"after": cursor} if cursor else {})
        assert page.status_code == 200
        seen += re.findall(rf"/runs/({tenant}-r\d+)\"", page.text)
        found = re.search(r'href="[^"]*after=([^"&]+)[^"]*" rel="next"', page.text)
        if not found:
            break
        cursor = found[1]
    assert seen == [f"{tenant}-r{i:03d}" for i in range(119, -1, -1)]
    failed = await http.get(f"/ui/t/{tenant}/runs", params={"status": "failed"})
    assert len(re.findall(rf"/runs/{tenant}-r\d+\"", failed.text)) == 12
    narrowed = await http.get(f"/ui/t/{tenant}/runs", params={
        "template": "other.template", "trace": "trace-0",
        "since": (base + timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%S")})
    rows = re.findall(rf"/runs/{tenant}-r(\d+)\"", narrowed.text)
    assert rows and all(int(r) % 3 == 0 and int(r) % 7 == 0 and int(r) >= 30 for r in rows)
    forged = await http.get(f"/ui/t/{tenant}/runs", params={"after": "not-a-cursor"})
    assert forged.status_code == 400 and "cursor" in forged.text
    charts = await http.get(f"/ui/t/{tenant}/runs", params={"window": "6h"})
    assert "<svg" in charts.text and "other.template" in charts.text
    assert RunStatus.FAILED.value in charts.text


async def test_event_gate_counts_duplicates_and_rate_limit_refusals_per_minute(
        runtime: Runtime, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """A duplicate and refusals over the rate limit (3 a minute here) are counted in the tenant's minute, shown
    on the events page, and each refusal is also audited."""
    tenant, key = await tenant_key(runtime)
    monkeypatch.setenv(Flag.RATE_LIMITING.value, "1")
    principal = Principal(actor="app", scopes=("events:write",), tenant_id=tenant)
    envelope = EventEnvelope(tenant_id=tenant, event_id="same", event_type="order.placed", source_app="shop")
    await runtime.gate.admit_event(envelope, principal)
    await runtime.gate.admit_event(envelope, principal)  # the duplicate
    refused = 0
    for index in range(6):
        try:
            await runtime.gate.admit_event(envelope.model_copy(update={"event_id": f"n{index}"}), principal)
        except RateLimited:
            refused += 1
    monkeypatch.delenv(Flag.RATE_LIMITING.value)
    minutes = await runtime.gate.deduper.refusals(tenant, datetime.now(UTC) - timedelta(minutes=5))
    assert sum(m.duplicates for m in minutes) == 1 and sum(m.rate_limited for m in minutes) == refused > 0
    denials = [e for e in await runtime.gate.audit.list(tenant, limit=50) if e.decision == "deny"]
    assert len(denials) == refused
    await sign_in(http, api_key=key)
    page = await http.get(f"/ui/t/{tenant}/events")
    assert "rate limited" in page.text and "duplicates" in page.text


async def test_kill_switch_changes_are_audited_on_the_fleet_chain_when_audit_logging_is_on_either_side(
        runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """`flags set/unset` and the console share one operation: with audit logging off before and after nothing
    is written; turning audit logging on, then off again, is written both times (it is on on one side), with
    the reason redacted."""
    monkeypatch.delenv(Flag.AUDIT_LOGGING.value, raising=False)
    before = len(await runtime.gate.audit.list(FLEET_CHAIN, limit=1000))
    try:
        quiet = await change_override(runtime.store, runtime.gate.audit, Flag.MANIFESTS, True, actor="cli")
        assert not quiet.audited and quiet.after.enabled and not quiet.had_override
        await change_override(runtime.store, runtime.gate.audit, Flag.AUDIT_LOGGING, True, actor="cli")
        off = await change_override(runtime.store, runtime.gate.audit, Flag.AUDIT_LOGGING, False, actor="ops",
                                    reason="noise, api_key=abc123secretvalue")
        unset = await change_override(runtime.store, runtime.gate.audit, Flag.AUDIT_LOGGING, None, actor="ops")
        assert off.audited and off.before.enabled and not off.after.enabled and unset.audited is False
    finally:
        for flag in (Flag.MANIFESTS, Flag.AUDIT_LOGGING):
            await runtime.store.delete_flag_override(flag)
    entries = list(reversed(await runtime.gate.audit.list(FLEET_CHAIN, limit=1000)))[before:]
    assert [(e.action, e.resource, e.actor) for e in entries] == [
        ("flags.set", Flag.AUDIT_LOGGING.value, "cli"), ("flags.set", Flag.AUDIT_LOGGING.value, "ops")]
    assert "abc123secretvalue" not in entries[1].reason


async def test_trigger_pages_show_a_stock_update_as_drift_and_a_deleted_schedule(
        runtime: Runtime, http: httpx.AsyncClient) -> None:
    """After a stock `temporal schedule update`, the trigger's page shows the live Schedule, `Drifted` with each
    difference and the repair command, and the list marks it; after `temporal schedule delete` the page says
    the Schedule is missing, naming repair."""
    import subprocess

    from shared.triggers.schedules import schedule_id
    from workers.stack import temporal_binary

    tenant, key = await tenant_key(runtime)
    service = trigger_service(runtime)
    await service.create(TriggerSpec(tenant_id=tenant, name="nightly", kind=TriggerKind.CRON, template_key=HC,
                                     cron="0 3 * * *", timezone="Europe/Berlin"))
    sid = schedule_id(tenant, "nightly")

    def stock(*args: str) -> None:
        done = subprocess.run([str(temporal_binary()), "schedule", *args, "--schedule-id", sid,
                               "--address", runtime.settings.temporal_address],
                              capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr

    await asyncio.to_thread(stock, "update", "--cron", "0 4 * * *", "--workflow-id", f"{sid}/fire",
                            "--task-queue", runtime.settings.task_queue, "--type", "jobforge.trigger.fire")
    await sign_in(http, api_key=key)
    page = await http.get(f"/ui/t/{tenant}/triggers/nightly")
    assert page.status_code == 200
    assert "Drifted" in page.text and "input: missing" in page.text and "0 4 * * *" in page.text
    assert f"jobforge triggers repair nightly --tenant {tenant}" in page.text
    assert "kept by repair and update" in page.text
    listed = await http.get(f"/ui/t/{tenant}/triggers")
    assert "s-drifted" in listed.text and "difference(s) from JobForge" in listed.text
    await asyncio.to_thread(stock, "delete")
    gone = await http.get(f"/ui/t/{tenant}/triggers/nightly")
    assert gone.status_code == 200 and "Temporal Schedule is missing" in gone.text
    assert f"jobforge triggers repair nightly --tenant {tenant}" in gone.text
    await service.delete(tenant, "nightly")
