"""The console's routes: sign-in, runs, events, triggers, audit, flags and tenants (server-rendered HTML).

Every page reads without JavaScript; htmx (vendored under ``static/``) refreshes what changes while
one looks: the runs table and a running run's status and verify steps. Every tenant page checks the
viewer against its tenant and the scopes the HTTP API asks for the same data (:meth:`Viewer.scope`);
state-changing forms carry the session's CSRF token and are audited.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import psycopg
import structlog
from fastapi import Depends, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from jobforge.errors import (
    InvalidRequest,
    JobForgeError,
    NotFound,
    OperatorOnly,
    RunNotFound,
    TriggerNotFound,
    Unauthenticated,
    http_status,
)
from jobforge.models import RunStatus, TriggerKind
from shared.flags import Flag, parse_switch
from shared.kill_switch import FLEET_CHAIN, change_override
from shared.replay.bundle import tar_bundle
from shared.replay.service import ReplayService
from shared.security.audit import Decision
from shared.security.redaction import redact, redact_text
from shared.store.store import RunFilter, unreachable
from workers.console import reads
from workers.console.auth import (
    ARTIFACTS_READ,
    AUDIT_READ,
    EVENTS_READ,
    LOGIN_COOKIE,
    RUNS_READ,
    SESSION_COOKIE,
    TRIGGERS_READ,
    TRIGGERS_WRITE,
    Auth,
    Viewer,
    check_origin,
    checked_form,
    new_login_token,
    operator_digest,
    read_form,
    secure_cookies,
    set_session_cookie,
)
from workers.console.render import CatchAll, Headers, Pages
from workers.runtime import Runtime

log = structlog.get_logger("jobforge.console")

PAGE = 50
_FLASH = {"paused": "Trigger paused.", "resumed": "Trigger resumed.", "fired": "Fire decided (see the newest row).",
          "flag": "Flag changed; running workers see it within the override TTL.", "signed_out": "Signed out."}
_LOCAL_MINUTE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?$")


async def _viewer(request: Request) -> Viewer:
    auth: Auth = request.app.state.console_auth
    return await auth.viewer(request)


#: a route parameter: the signed-in viewer (no session: a redirect to the sign-in page)
Signed = Annotated[Viewer, Depends(_viewer)]


def create_console(runtime: Callable[[], Runtime]) -> Headers:
    """The console as an ASGI app, to mount under ``/ui`` of ``jobforge-api``."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None, title="JobForge console")
    auth = Auth(runtime)
    app.state.console_auth = auth
    pages = Pages()

    def base(request: Request) -> str:
        return str(request.scope.get("root_path", ""))

    def page(request: Request, name: str, viewer: Viewer | None, status: int = 200, **context: Any) -> Response:
        if viewer is not None:
            context.setdefault("csrf", viewer.session.csrf_token)
        flash = _FLASH.get(request.query_params.get("done", ""), "")
        return pages.html(request, name, status, viewer=viewer, flash=flash, **context)

    def redirect(url: str) -> Response:
        return RedirectResponse(url, status_code=303)

    # -- errors: an HTML page (or a redirect to sign in), never a stack ----------------------------------

    def error_page(request: Request, status: int, title: str, message: str) -> Response:
        if request.headers.get("hx-request"):
            return Response(f'<p class="error" role="alert">{_escape(message)}</p>', status_code=status,
                            media_type="text/html")
        return pages.html(request, "error.html", status, title=title, message=message)

    @app.exception_handler(Unauthenticated)
    async def _sign_in(request: Request, exc: Unauthenticated) -> Response:
        target = f"{base(request)}/login"
        if request.method == "GET" and request.url.path != target:
            target += "?next=" + quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
        if request.headers.get("hx-request"):
            return Response(status_code=200, headers={"HX-Redirect": target})
        return redirect(target)

    @app.exception_handler(JobForgeError)
    async def _jobforge_error(request: Request, exc: JobForgeError) -> Response:
        status = http_status(exc)
        log.info("console_refused", path=request.url.path, code=exc.code, status=status)
        return error_page(request, status, exc.code.replace("_", " "), redact_text(exc.message))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return error_page(request, exc.status_code, "not found" if exc.status_code == 404 else "error",
                          "Nothing is here." if exc.status_code == 404 else str(exc.detail))

    async def _database_error(request: Request, exc: Exception) -> Response:
        if unreachable(exc):
            log.warning("console_store_unavailable", error_type=type(exc).__name__)
            return error_page(request, 503, "store unavailable", "The JobForge database cannot be reached; retry.")
        return await _unexpected(request, exc)

    for database_error in (psycopg.Error, ConnectionError):
        app.add_exception_handler(database_error, _database_error)

    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.error("console_unexpected_error", path=request.url.path, error_type=type(exc).__name__,
                  error=redact_text(str(exc).splitlines()[0] if str(exc) else "")[:300])
        return error_page(request, 500, "error", "The console failed to answer; the error was logged.")

    app.add_middleware(CatchAll, answer=_unexpected)

    # -- static files ----------------------------------------------------------------------------------

    @app.get("/static/{name}")
    async def static(name: str, request: Request) -> Response:
        return pages.static.response(name, request)

    # -- sign-in ---------------------------------------------------------------------------------------

    def home_of(request: Request, who: Viewer) -> str:
        if who.is_operator:
            return f"{base(request)}/tenants"
        return f"{base(request)}/t/{who.principal.tenant_id}/runs"

    def safe_next(request: Request, target: str | None) -> str | None:
        prefix = base(request) + "/"
        if target and target.startswith(prefix) and not target.startswith("//") and "\\" not in target:
            return target
        return None

    @app.get("/")
    async def home(request: Request, who: Signed) -> Response:
        return redirect(home_of(request, who))

    def login_page(request: Request, status: int = 200, message: str = "") -> Response:
        token = new_login_token()
        rt = runtime()
        response = pages.html(request, "login.html", status, message=message, login_csrf=token,
                              operator=operator_digest(rt.settings) is not None,
                              next=safe_next(request, request.query_params.get("next")) or "")
        response.set_cookie(LOGIN_COOKIE, token, max_age=900, path=base(request) or "/", httponly=True,
                            samesite="strict", secure=secure_cookies(rt.settings, request))
        return response

    @app.get("/login")
    async def login_form(request: Request) -> Response:
        token = request.cookies.get(SESSION_COOKIE, "")
        if token:
            try:
                who = await auth.viewer(request)
            except Unauthenticated:
                pass
            else:
                return redirect(home_of(request, who))
        return login_page(request)

    @app.post("/login")
    async def login(request: Request) -> Response:
        check_origin(request)
        form = await read_form(request)
        expected = request.cookies.get(LOGIN_COOKIE, "")
        if not expected or form.get("login_csrf") != expected:
            return login_page(request, 403, "The sign-in form expired; try again.")
        rt = runtime()
        try:
            if form.get("operator_token"):
                token = await auth.sign_in_operator(form["operator_token"])
                log.info("console_signed_in", actor="console:operator")
                target = f"{base(request)}/tenants"
            else:
                token, principal = await auth.sign_in_key(form.get("api_key", ""))
                assert principal.tenant_id is not None
                log.info("console_signed_in", actor=principal.actor, tenant_id=principal.tenant_id)
                await rt.gate.record(await rt.gate.flag_values(), principal.tenant_id, f"console:{principal.actor}",
                                     "console.sign_in", principal.tenant_id, Decision.ALLOW, "signed in to the console")
                target = f"{base(request)}/t/{principal.tenant_id}/runs"
        except Unauthenticated as exc:
            log.info("console_sign_in_refused", operator=bool(form.get("operator_token")))
            return login_page(request, 401, exc.message if "operator" in exc.message else
                              "That API key was not accepted (unknown, malformed or revoked).")
        response = redirect(safe_next(request, form.get("next")) or target)
        set_session_cookie(response, token, rt.settings, request, base(request))
        response.delete_cookie(LOGIN_COOKIE, path=base(request) or "/")
        return response

    @app.post("/logout")
    async def logout(request: Request, who: Signed) -> Response:
        await checked_form(request, who)
        await auth.sign_out(who.token)
        response = redirect(f"{base(request)}/login?done=signed_out")
        response.delete_cookie(SESSION_COOKIE, path=base(request) or "/")
        return response

    # -- tenants (operator) ----------------------------------------------------------------------------

    def operator_only(who: Viewer) -> None:
        if not who.is_operator:
            raise OperatorOnly()

    @app.get("/tenants")
    async def tenants(request: Request, who: Signed) -> Response:
        operator_only(who)
        wanted = request.query_params.get("tenant", "").strip()
        if wanted:
            await runtime().gate.tenants.require(who.scope(wanted))  # a mistyped tenant: unknown_tenant, 404
            return redirect(f"{base(request)}/t/{quote(wanted)}/runs")
        rows = await runtime().gate.tenants.list_tenants()
        return page(request, "tenants.html", who, tenants=rows, section="tenants")

    @app.get("/t/{tenant}")
    async def tenant_home(request: Request, tenant: str, who: Signed) -> Response:
        await runtime().gate.tenants.require(who.scope(tenant))
        return redirect(f"{base(request)}/t/{quote(tenant)}/runs")

    # -- runs ------------------------------------------------------------------------------------------

    def run_filter(request: Request, tenant: str, errors: list[str]) -> tuple[RunFilter, dict[str, str]]:
        q = request.query_params
        params = {k: q.get(k, "").strip() for k in ("template", "status", "trigger", "trace", "since", "until")}
        status = None
        if params["status"]:
            try:
                status = RunStatus(params["status"])
            except ValueError:
                errors.append(f"status {params['status']!r} is not a run status")
        moments: dict[str, datetime | None] = {}
        for name in ("since", "until"):
            moments[name] = None
            if params[name]:
                if _LOCAL_MINUTE.match(params[name]):
                    moments[name] = datetime.fromisoformat(params[name]).replace(tzinfo=UTC)
                else:
                    errors.append(f"{name} must be a date and time (YYYY-MM-DDTHH:MM, UTC)")
        for name, limit in (("template", 200), ("trace", 128), ("trigger", 63)):
            if len(params[name]) > limit:
                errors.append(f"{name} is longer than {limit} characters")
                params[name] = ""
        return RunFilter(template_key=params["template"] or None, status=status, trace_id=params["trace"] or None,
                         since=moments["since"], until=moments["until"]), params

    async def runs_context(request: Request, tenant: str) -> dict[str, Any]:
        rt = runtime()
        errors: list[str] = []
        where, params = run_filter(request, tenant, errors)
        if params["trigger"]:
            try:
                trigger = await rt.gate.events.get(tenant, params["trigger"])
                where = dataclasses.replace(where, trigger_id=trigger.trigger_id)
            except TriggerNotFound:
                errors.append(f"no trigger {params['trigger']!r}")
                where = dataclasses.replace(where, trigger_id="-")  # matches nothing
        cursor = request.query_params.get("after") or None
        found = await rt.store.page_runs(tenant, where, cursor=cursor, limit=PAGE)
        at = reads.now()
        return {"runs": found.items, "next_cursor": found.next_cursor, "params": params, "errors": errors,
                "cursor": cursor or "", "durations": {r.run_id: reads.duration_of(r, at) for r in found.items},
                "live": cursor is None or any(not r.status.is_final for r in found.items)}

    @app.get("/t/{tenant}/runs")
    async def runs(request: Request, tenant: str, who: Signed) -> Response:
        who.scope(tenant, RUNS_READ)
        rt = runtime()
        window = request.query_params.get("window", "1h")
        window = window if window in reads.WINDOWS else "1h"
        context, (outcome, timing), triggers = await asyncio.gather(
            runs_context(request, tenant), reads.run_charts(rt, tenant, window), rt.gate.events.list(tenant))
        return page(request, "runs.html", who, tenant=tenant, section="runs", outcome=outcome, timing=timing,
                    window=window, windows=list(reads.WINDOWS), templates=[t.key for t in rt.registry],
                    statuses=[s.value for s in RunStatus], trigger_names=[t.name for t in triggers], **context)

    @app.get("/t/{tenant}/runs/rows")
    async def runs_rows(request: Request, tenant: str, who: Signed) -> Response:
        who.scope(tenant, RUNS_READ)
        context = await runs_context(request, tenant)
        return pages.fragment(request, "_runs_rows.html", tenant=tenant, **context)

    @app.get("/t/{tenant}/run")
    async def find_run(request: Request, tenant: str, who: Signed) -> Response:
        who.scope(tenant, RUNS_READ)
        ident = request.query_params.get("id", "").strip()
        if not ident or len(ident) > 512:
            raise RunNotFound(ident[:80])
        run = await runtime().store.get_run(ident, tenant)
        return redirect(f"{base(request)}/t/{quote(tenant)}/runs/{quote(run.run_id)}")

    @app.get("/t/{tenant}/runs/{run_id}")
    async def run(request: Request, tenant: str, run_id: str, who: Signed) -> Response:
        who.scope(tenant, RUNS_READ)
        found = await reads.run_page(runtime(), tenant, run_id)
        return page(request, "run.html", who, tenant=tenant, section="runs", p=found,
                    can_download=who.may(ARTIFACTS_READ))

    @app.get("/t/{tenant}/runs/{run_id}/progress")
    async def run_progress(request: Request, tenant: str, run_id: str, who: Signed) -> Response:
        who.scope(tenant, RUNS_READ)
        found = await reads.run_progress(runtime(), tenant, run_id)
        was_live = request.query_params.get("live") == "1"
        # once the run has finished, the whole page reloads to show its result, artifacts and timeline
        headers = {"HX-Refresh": "true"} if was_live and not found.live else None
        return pages.fragment(request, "_progress.html", headers=headers, tenant=tenant, g=found)

    @app.get("/t/{tenant}/runs/{run_id}/artifacts/{artifact_id}")
    async def artifact(request: Request, tenant: str, run_id: str, artifact_id: int, who: Signed) -> Response:
        who.scope(tenant, ARTIFACTS_READ)
        rt = runtime()
        record = next((a for a in await rt.store.list_artifacts(tenant, run_id) if a.id == artifact_id), None)
        if record is None:
            raise NotFound("no such artifact of this run")
        root = rt.settings.artifact_root.resolve()
        path = (root / record.path).resolve()
        if not path.is_relative_to(root):
            raise NotFound("no such artifact of this run")
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except OSError:
            raise NotFound("the artifact's file is missing from the artifact store") from None
        filename = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(record.name).name) or "artifact"
        media = record.media_type if record.media_type in ("application/json", "text/plain") else \
            "application/octet-stream"
        return Response(data, media_type=media, headers={
            "Content-Disposition": f'attachment; filename="{filename}"', "ETag": f'"{record.sha256}"',
            "Content-Security-Policy": "sandbox; default-src 'none'"})

    @app.get("/t/{tenant}/runs/{run_id}/replay")
    async def replay(request: Request, tenant: str, run_id: str, who: Signed) -> Response:
        who.scope(tenant, RUNS_READ)
        rt = runtime()
        bundle = await ReplayService(rt.store, rt.temporal, rt.flags).bundle(run_id, tenant)
        root = f"replay-{bundle.run_id}"
        data = await asyncio.to_thread(tar_bundle, bundle.files, root)
        return Response(data, media_type="application/gzip", headers={
            "Content-Disposition": f'attachment; filename="{root}.tar.gz"', "ETag": f'"{bundle.sha256}"'})

    # -- events ----------------------------------------------------------------------------------------

    @app.get("/t/{tenant}/events")
    async def events(request: Request, tenant: str, who: Signed) -> Response:
        who.scope(tenant, EVENTS_READ)
        rt = runtime()
        q = request.query_params
        event_type, source = q.get("type", "").strip()[:200], q.get("source", "").strip()[:100]
        window = q.get("window", "1h") if q.get("window", "1h") in reads.WINDOWS else "1h"
        cursor = q.get("after") or None
        found, chart, enabled = await asyncio.gather(
            rt.gate.events.page_events(tenant, event_type=event_type or None, source_app=source or None,
                                       cursor=cursor, limit=PAGE),
            reads.event_chart(rt, tenant, window), rt.flags.is_enabled(Flag.EVENTS))
        return page(request, "events.html", who, tenant=tenant, section="events", events=found.items,
                    next_cursor=found.next_cursor, gate_chart=chart, window=window, windows=list(reads.WINDOWS),
                    params={"type": event_type, "source": source}, enabled=enabled, cursor=cursor or "")

    @app.get("/t/{tenant}/events/{row_id}")
    async def event(request: Request, tenant: str, row_id: int, who: Signed) -> Response:
        who.scope(tenant, EVENTS_READ)
        found = await runtime().gate.events.event_by_id(tenant, row_id)
        if found is None:
            raise NotFound(f"no event {row_id} of tenant {tenant}")
        return page(request, "event.html", who, tenant=tenant, section="events", e=found,
                    payload=redact(found.payload))

    # -- triggers --------------------------------------------------------------------------------------

    @app.get("/t/{tenant}/triggers")
    async def triggers(request: Request, tenant: str, who: Signed) -> Response:
        who.scope(tenant, TRIGGERS_READ)
        rt = runtime()
        cursor = request.query_params.get("after") or None
        views, dry, enabled = await asyncio.gather(
            reads.triggers(rt).list(tenant),
            rt.gate.events.page_fires(tenant, verdict="dry_run", cursor=cursor, limit=PAGE),
            rt.flags.is_enabled(Flag.TRIGGERS))
        return page(request, "triggers.html", who, tenant=tenant, section="triggers", views=views,
                    dry=dry.items, next_cursor=dry.next_cursor, cursor=cursor or "", enabled=enabled,
                    can_act=who.may(TRIGGERS_WRITE))

    @app.get("/t/{tenant}/triggers/{name}")
    async def trigger(request: Request, tenant: str, name: str, who: Signed) -> Response:
        who.scope(tenant, TRIGGERS_READ)
        rt = runtime()
        view = await reads.triggers(rt).show(tenant, name)
        cursor = request.query_params.get("after") or None
        fires, enabled = await asyncio.gather(
            rt.gate.events.page_fires(tenant, trigger_id=view.trigger.trigger_id, cursor=cursor, limit=PAGE),
            rt.flags.is_enabled(Flag.TRIGGERS))
        return page(request, "trigger.html", who, tenant=tenant, section="triggers", v=view, fires=fires.items,
                    next_cursor=fires.next_cursor, cursor=cursor or "", enabled=enabled,
                    can_act=who.may(TRIGGERS_WRITE), kinds=TriggerKind)

    @app.post("/t/{tenant}/triggers/{name}/{action}")
    async def trigger_action(request: Request, tenant: str, name: str, action: str, who: Signed) -> Response:
        await checked_form(request, who)
        rt = runtime()
        flags = await rt.gate.flag_values()
        if action not in ("pause", "resume", "fire"):
            raise NotFound(f"no trigger action {action!r}")
        try:
            who.scope(tenant, TRIGGERS_WRITE)
        except JobForgeError as err:
            if who.principal.may_act_for(tenant):
                audited = "triggers.fire_now" if action == "fire" else f"triggers.{action}"
                await rt.gate.record(flags, tenant, who.actor, audited, name, Decision.DENY, err.message)
            raise
        service = reads.triggers(rt)
        if action == "fire":
            # the safety gate decides, records and audits the fire itself (as the trigger); this entry says who asked
            outcome = await service.fire(tenant, name, actor=who.actor)
            await rt.gate.record(flags, tenant, who.actor, "triggers.fire_now", name, Decision.ALLOW,
                                 f"fire requested from the JobForge console: {outcome.verdict.value}",
                                 details={"fire_id": outcome.fire_id, "verdict": outcome.verdict.value,
                                          "reasons": outcome.reasons, "run_workflow_id": outcome.run_workflow_id})
            log.info("console_trigger_fired", tenant_id=tenant, trigger=name, verdict=outcome.verdict.value)
            done = "fired"
        else:
            note = f"{action}d from the JobForge console by {who.actor}"
            if action == "pause":
                await service.pause(tenant, name, note=note)
            else:
                await service.resume(tenant, name, note=note)
            await rt.gate.record(flags, tenant, who.actor, f"triggers.{action}", name, Decision.ALLOW, note)
            log.info("console_trigger_changed", tenant_id=tenant, trigger=name, action=action)
            done = f"{action}d"
        return redirect(f"{base(request)}/t/{quote(tenant)}/triggers/{quote(name)}?done={done}")

    # -- audit -----------------------------------------------------------------------------------------

    async def audit_page(request: Request, who: Viewer, chain: str, verify: bool) -> Response:
        rt = runtime()
        q = request.query_params
        before = _positive(q.get("before"))
        broken = _positive(q.get("broken"))
        entries, enabled = await asyncio.gather(rt.gate.audit.list(chain, limit=PAGE, before_seq=before),
                                                rt.flags.is_enabled(Flag.AUDIT_LOGGING))
        verdict = await rt.gate.audit.verify(chain) if verify else None
        first = min((p.seq for p in verdict.problems), default=None) if verdict is not None else None
        older = entries[-1].seq if len(entries) == PAGE and entries[-1].seq > 1 else None
        is_fleet = chain == FLEET_CHAIN
        prefix = f"{base(request)}/fleet/audit" if is_fleet else f"{base(request)}/t/{quote(chain)}/audit"
        return page(request, "audit.html", who, tenant=None if is_fleet else chain, section="audit", chain=chain,
                    fleet=is_fleet, entries=entries, older=older, before=before, verdict=verdict,
                    first_broken=first, broken=broken or first, enabled=enabled, prefix=prefix,
                    details=[redact(e.details) for e in entries])

    @app.get("/t/{tenant}/audit")
    async def audit(request: Request, tenant: str, who: Signed) -> Response:
        return await audit_page(request, who, who.scope(tenant, AUDIT_READ), verify=False)

    @app.get("/t/{tenant}/audit/verify")
    async def audit_verify(request: Request, tenant: str, who: Signed) -> Response:
        return await audit_page(request, who, who.scope(tenant, AUDIT_READ), verify=True)

    @app.get("/fleet/audit")
    async def fleet_audit(request: Request, who: Signed) -> Response:
        operator_only(who)
        return await audit_page(request, who, FLEET_CHAIN, verify=False)

    @app.get("/fleet/audit/verify")
    async def fleet_audit_verify(request: Request, who: Signed) -> Response:
        operator_only(who)
        return await audit_page(request, who, FLEET_CHAIN, verify=True)

    # -- flags (operator): the kill switch -------------------------------------------------------------

    @app.get("/flags")
    async def flags(request: Request, who: Signed) -> Response:
        operator_only(who)
        rt = runtime()
        return page(request, "flags.html", who, section="flags", rows=await reads.flag_rows(rt),
                    ttl=rt.settings.flag_override_ttl_seconds)

    @app.post("/flags/{name}")
    async def flag_change(request: Request, name: str, who: Signed) -> Response:
        form = await checked_form(request, who)
        operator_only(who)
        rt = runtime()
        flag = Flag.parse(name)
        action = form.get("action", "")
        if action not in ("on", "off", "unset"):
            raise InvalidRequest("choose on, off or unset")
        reason = form.get("reason", "").strip()
        if form.get("confirm") != "yes":
            current = next(row for row in await reads.flag_rows(rt) if row.value.flag is flag)
            return page(request, "flag_confirm.html", who, section="flags", flag=flag, action=action, reason=reason,
                        row=current, ttl=rt.settings.flag_override_ttl_seconds)
        await change_override(rt.store, rt.gate.audit, flag, None if action == "unset" else parse_switch(action),
                              actor=who.actor, reason=reason)
        log.info("console_flag_changed", flag=flag.value, action=action, actor=who.actor)
        return redirect(f"{base(request)}/flags?done=flag")

    return Headers(app)


def _positive(text: str | None) -> int | None:
    if not text:
        return None
    if not text.isdigit() or len(text) > 18 or int(text) < 1:
        raise InvalidRequest("a sequence number is a positive integer")
    return int(text)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
