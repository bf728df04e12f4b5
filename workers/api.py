"""``jobforge-api``: the HTTP ingress (FastAPI on uvicorn) in front of the same security gate.

Authentication is a tenant API key (``Authorization: Bearer jfk_...``), which pins the tenant and
the granted scopes. Every error is ``application/problem+json`` without stack or secret; a tenant
never sees another tenant's runs, artifacts or audit entries (a foreign id is a 404).
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any, Literal

import h11
import orjson
import psycopg
import structlog
import typer
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from temporalio.service import RPCError
from uvicorn import Config as ServerConfig
from uvicorn import Server
from uvicorn.protocols.http.h11_impl import H11Protocol

from jobforge.errors import (
    EventNotFound,
    InsufficientScope,
    InvalidRequest,
    JobForgeError,
    RateLimited,
    Unauthenticated,
    http_status,
)
from jobforge.models import (
    ArtifactRecord,
    EventEnvelope,
    EventReceipt,
    EventRouting,
    FireRecord,
    RunHandleInfo,
    RunRecord,
    SealedSecret,
    TriggerSpec,
    TriggerView,
)
from shared import tracing
from shared.events import route_admitted, route_key_at
from shared.flags import Flag
from shared.gate import EVENTS_SUBMIT, JOBS_REQUEST, PACED_ACTION, TOKENS_ISSUE_ACTION, TRIGGERS_CREATE, Charge
from shared.key_rotation_runs import ROTATION, sealed_secret_of
from shared.logs import configure
from shared.outages import as_data_error, as_outage
from shared.replay.bundle import REPLAY_FILE, tar_bundle
from shared.security.audit import Decision
from shared.security.limits import HARD_CAP_FACTOR, PayloadLimits, check_storable, parse_and_check
from shared.security.pacing import REFUSED_STATUSES, HeldFull, Pacer, PacingPolicy
from shared.security.principal import Principal
from shared.security.ratelimit import RateDecision, RatePolicy, headers
from shared.security.redaction import redact, redact_text
from shared.security.scopes import require_scopes
from shared.settings import Settings
from shared.stale_runs import settle
from shared.store.fast import PoolTimeout
from shared.triggers.service import TriggerService
from workers.console import mount as mount_console
from workers.runtime import (
    Runtime,
    configure_telemetry,
    leave,
    open_runtime,
    require_database,
    wait_for_stack,
)

log = structlog.get_logger("jobforge.api")

PROBLEM = "application/problem+json"
#: the scopes of the trigger and event-routing routes (those of the console, workers/console/auth.py)
TRIGGERS_READ = "triggers:read"
TRIGGERS_WRITE = "triggers:write"
EVENTS_READ = "events:read"
ASGIApp = Callable[[MutableMapping[str, Any], Callable[[], Awaitable[dict[str, Any]]],
                    Callable[[dict[str, Any]], Awaitable[None]]], Awaitable[None]]
#: what a 503 (the store or Temporal away) tells the caller to wait before retrying
RETRY_AFTER_SECONDS = 1


# -- request and response bodies -----------------------------------------------------------------


class JobRequestBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    template_key: str = Field(max_length=200)
    inputs: dict[str, Any] = Field(default_factory=dict)
    #: optional; must be the key's tenant when given
    tenant_id: str | None = Field(default=None, max_length=63)
    trace_id: str | None = Field(default=None, max_length=128)
    actor: str | None = Field(default=None, max_length=200)
    idempotency_key: str | None = Field(default=None, max_length=255)
    policy_token: str | None = Field(default=None, max_length=16384)


class EventBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event_id: str = Field(max_length=200)
    event_type: str = Field(max_length=200)
    tenant_id: str | None = Field(default=None, max_length=63)
    trace_id: str | None = Field(default=None, max_length=128)
    source_app: str = Field(default="", max_length=100)
    source_module: str = Field(default="", max_length=200)
    payload: dict[str, Any] = Field(default_factory=dict)
    occurred_at: datetime | None = None


class PolicyTokenBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    template_key: str = Field(max_length=200)
    inputs: dict[str, Any] = Field(default_factory=dict)
    ttl_seconds: int | None = Field(default=None, ge=5, le=86_400)


class PolicyTokenOut(BaseModel):
    token: str
    ref: str
    jti: str
    expires_at: int


class AuditEntryOut(BaseModel):
    tenant_id: str
    seq: int
    occurred_at: str
    actor: str
    action: str
    resource: str
    decision: str
    reason: str
    trace_id: str
    details: dict[str, Any]
    hash: str
    prev_hash: str


class Health(BaseModel):
    status: str
    database: str


# -- problems ------------------------------------------------------------------------------------


def problem(status: int, code: str, detail: str, details: dict[str, Any] | None = None,
            extra_headers: dict[str, str] | None = None) -> Response:
    """An RFC 9457 problem document; detail and details pass through redaction."""
    body = {"type": f"urn:jobforge:problem:{code}", "title": code.replace("_", " "), "status": status,
            "detail": redact_text(detail), "code": code, "details": redact(details or {})}
    return Response(orjson.dumps(body), status_code=status, media_type=PROBLEM, headers=extra_headers)


def error_response(err: JobForgeError, policy: RatePolicy | None = None,
                   extra_headers: dict[str, str] | None = None) -> Response:
    status = http_status(err)
    extra: dict[str, str] = dict(extra_headers or {})
    if isinstance(err, Unauthenticated):
        extra["WWW-Authenticate"] = 'Bearer realm="jobforge"'
    elif isinstance(err, InsufficientScope):
        extra["WWW-Authenticate"] = f'Bearer error="insufficient_scope", scope="{" ".join(err.missing)}"'
    elif isinstance(err, RateLimited):
        limit = int(err.details.get("limit") or 1)
        period = float(err.details.get("period") or 60.0)
        retry = float(err.details.get("retry_after") or 1.0)
        refused = RateDecision(allowed=False, tat=0.0, remaining=0, retry_after=retry, reset=retry)
        extra.update(headers(refused, policy or RatePolicy(limit, period)))
    elif err.retryable:
        extra.setdefault("Retry-After", str(RETRY_AFTER_SECONDS))
    return problem(status, err.code, err.message, dict(err.details), extra)


def problem_bytes(status: int, code: str, detail: str, details: dict[str, Any] | None = None) -> bytes:
    """The body of :func:`problem`, for answers written below FastAPI (middleware, the HTTP protocol)."""
    return orjson.dumps({"type": f"urn:jobforge:problem:{code}", "title": code.replace("_", " "), "status": status,
                         "detail": redact_text(detail), "code": code, "details": redact(details or {})})


async def send_problem(send: Callable[[dict[str, Any]], Awaitable[None]], status: int, code: str, detail: str,
                       details: dict[str, Any] | None = None, extra: dict[str, str] | None = None) -> None:
    body = problem_bytes(status, code, detail, details)
    headers = [(b"content-type", PROBLEM.encode()), (b"content-length", str(len(body)).encode())]
    headers += [(name.lower().encode(), value.encode()) for name, value in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def answer_for(exc: BaseException) -> tuple[JobForgeError, int]:
    """The typed error and HTTP status that answer an exception no handler took."""
    if isinstance(exc, JobForgeError):
        return exc, http_status(exc)
    outage = as_outage(exc)
    if outage is not None:
        return outage, 503
    if as_data_error(exc):
        return InvalidRequest("the request holds a value the store cannot hold"), 400
    return JobForgeError("JobForge failed to answer; the error was logged"), 500


class ProblemGuard:
    """The outermost ASGI layer: whatever fails before an answer started is answered as problem+json
    (503 with Retry-After when the store or Temporal is away), never as the server's plain text."""

    def __init__(self, app: RefusalPacing) -> None:
        self.app = app
        #: the FastAPI app inside (its OpenAPI document, its routes)
        self.fastapi = app.fastapi
        #: the refusal pacing of this app
        self.pacer = app.pacer

    async def __call__(self, scope: MutableMapping[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]],
                       send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:
            err, status = answer_for(exc)
            if status == 500:
                log.error("api_unexpected_error", error_type=type(exc).__name__, answered=not started)
            if started:
                return  # the answer is under way: the server closes the connection
            extra = {"Retry-After": str(RETRY_AFTER_SECONDS)} if err.retryable else None
            await send_problem(send, status, err.code, err.message, dict(err.details), extra)


class ProblemH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, answering requests it cannot parse (headers over its limits,
    malformed request lines) with a problem+json 400 instead of plain text."""

    def send_400_response(self, msg: str) -> None:
        body = problem_bytes(400, "invalid_http_request",
                             "the request could not be read as HTTP/1.1 (malformed, or headers over the server's "
                             f"limit of {self.config.h11_max_incomplete_event_size or 16384} bytes)")
        event = h11.Response(status_code=400, reason=b"Bad Request", headers=[
            (b"content-type", PROBLEM.encode()), (b"content-length", str(len(body)).encode()),
            (b"connection", b"close")])
        try:
            self.transport.write(self.conn.send(event) or b"")
            self.transport.write(self.conn.send(h11.Data(data=body)) or b"")
            self.transport.write(self.conn.send(h11.EndOfMessage()) or b"")
        except h11.LocalProtocolError:  # the connection's state allows no answer any more
            pass
        self.transport.close()


class BodyLimit:
    """Pure ASGI middleware: refuse a body over the limit with 413 before reading it all.

    A declared ``Content-Length`` over the limit is refused without reading a byte; a chunked body
    is counted as it arrives and refused as soon as it passes the limit.
    """

    def __init__(self, app: Any, limit: Callable[[], Awaitable[int]], fallback: int) -> None:
        self.app: ASGIApp = app
        #: the FastAPI app inside (its OpenAPI document, its routes)
        self.fastapi: FastAPI | None = app if isinstance(app, FastAPI) else None
        self.limit = limit
        #: the cap when the limit cannot be read (flags live in the store): the hard cap, no lower
        self.fallback = fallback

    @staticmethod
    async def _refuse(send: Callable[[dict[str, Any]], Awaitable[None]], limit: int, seen: int | None) -> None:
        body = orjson.dumps({
            "type": "urn:jobforge:problem:payload_too_large", "title": "payload too large", "status": 413,
            "detail": f"the request body is over the limit of {limit} bytes", "code": "payload_too_large",
            "details": {"limit": "max_bytes", "allowed": limit, **({"actual": seen} if seen is not None else {})}})
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", PROBLEM.encode()), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: MutableMapping[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]],
                       send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        try:
            limit = await self.limit()
        except Exception:  # the store is away: cap at the hard cap; the handler answers the outage itself
            limit = self.fallback
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > limit:
                    await self._refuse(send, limit, declared)
                    return
        state = {"seen": 0, "over": False, "answered": False}

        async def counted_receive() -> dict[str, Any]:
            if state["over"]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                state["seen"] += len(message.get("body", b""))
                if state["seen"] > limit:
                    state["over"] = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: dict[str, Any]) -> None:
            if state["over"]:
                if not state["answered"]:
                    state["answered"] = True
                    await self._refuse(send, limit, None)
                return
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not state["over"]:
                raise
        if state["over"] and not state["answered"]:
            state["answered"] = True
            await self._refuse(send, limit, None)


#: the ASGI scope key of a request's :class:`Offense` (who its refusals are counted against)
OFFENSE = "jobforge.offense"


@dataclasses.dataclass(slots=True)
class Offense:
    """Who a request's refusal is counted against (the client address until an API key authenticates it),
    and the end of its offender's turn when the offender is paced."""

    offender: str
    end_turn: Callable[[], None] | None = None


class RefusalPacing:
    """Pure ASGI middleware pacing refused callers of the HTTP API (``/v1/``, see
    :mod:`shared.security.pacing`): a refused answer (4xx) of a caller over its allowance is held before
    it is sent, at most the policy's ``max_hold``; over the cap of held answers it is sent at once with
    ``Connection: close``. The ``principal`` dependency names the API key as the offender and, while the
    key is paced, waits for its turn (ended here, after the answer is sent)."""

    def __init__(self, app: BodyLimit, pacer: Pacer) -> None:
        self.app = app
        self.fastapi = app.fastapi
        self.pacer = pacer

    async def __call__(self, scope: MutableMapping[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]],
                       send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        if scope["type"] != "http" or not self.pacer.policy.enabled or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)  # the console (/ui) signs its users in by session, not by key
            return
        client = scope.get("client")
        offense = Offense(f"address:{client[0] if client else 'unknown'}")
        scope[OFFENSE] = offense

        async def paced_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start" and message["status"] in REFUSED_STATUSES:
                hold = self.pacer.refused(offense.offender)
                if hold > 0 and not await self.pacer.hold(hold):
                    message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
                    log.warning("refusal_pacing_full", held=self.pacer.held)
            await send(message)

        try:
            await self.app(scope, receive, paced_send)
        finally:
            if offense.end_turn is not None:
                offense.end_turn()


# -- the app -------------------------------------------------------------------------------------

bearer = HTTPBearer(auto_error=False, description="A tenant API key: `jobforge keys create --tenant T`.")


async def principal(request: Request,
                    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Principal:
    """The caller behind ``Authorization: Bearer <key>``."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthenticated()
    runtime: Runtime = request.app.state.runtime
    caller = await runtime.gate.tenants.authenticate(credentials.credentials)
    offense: Offense | None = request.scope.get(OFFENSE)
    if offense is not None:  # refusals count against the key from here on; a paced key waits for its turn
        offense.offender = f"key:{caller.key_id or caller.actor}"
        pacer: Pacer = request.app.state.pacer
        try:
            offense.end_turn = await pacer.turn(offense.offender)
        except HeldFull:
            err = RateLimited("this API key's requests keep being refused and too many of them are waiting; "
                              f"retry after {pacer.policy.max_hold:g}s", retry_after=pacer.policy.max_hold,
                              limit=runtime.settings.rate_limit_per_minute, bucket="refusal pacing")
            assert caller.tenant_id is not None
            await runtime.gate.deny(caller, caller.tenant_id, PACED_ACTION, err)
            raise err from None
    return caller


Caller = Annotated[Principal, Depends(principal)]


def charged(action: str) -> Callable[[Request, Principal], Awaitable[Charge]]:
    """A dependency charging the caller's request to its tenant's rate limit right after authentication,
    before the body is read: a request refused later (invalid, too large, a secret) still counts."""
    async def charge(request: Request, caller: Caller) -> Charge:
        runtime: Runtime = request.app.state.runtime
        assert caller.tenant_id is not None
        return await runtime.gate.charge_request(caller, caller.tenant_id, action)
    return charge


def stored_id(ident: str, name: str) -> str:
    """An id from the URL path, refused (400 naming it) when it holds text no stored id can hold."""
    check_storable(ident, "the URL", f"{{{name}}}")
    return ident


def _body_schema(model: type[BaseModel]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": model.model_json_schema(ref_template="#/components/schemas/{model}")}}}}


def create_app(settings: Settings, runtime: Runtime | None = None) -> ProblemGuard:
    """The ASGI app; with ``runtime`` given (tests) it is used as is, else opened for the app's life."""
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if runtime is not None:
            try:
                yield
            finally:
                pacer.release_all()
            return
        async with open_runtime(settings, process="jobforge-api") as opened:
            app.state.runtime = opened
            log.info("api_started", host=settings.api_host, port=settings.api_port)
            try:
                yield
            finally:
                pacer.release_all()  # held refusals are answered now, not after the grace period

    pacer = Pacer(PacingPolicy(settings.refusal_pacing_burst, settings.refusal_pacing_per_minute,
                               settings.refusal_pacing_max_hold_seconds, settings.refusal_pacing_max_held))
    app = FastAPI(title="JobForge", version="1", lifespan=lifespan,
                  description="Events and job requests behind JobForge's security gate.")
    app.state.pacer = pacer
    traced = tracing.current()
    if traced is not None:  # tracing on: a server span per request, parent of the Temporal spans it causes
        app.add_middleware(tracing.IngressSpans, tracer=traced.tracer)
    if runtime is not None:
        app.state.runtime = runtime

    def rt() -> Runtime:
        opened: Runtime = app.state.runtime
        return opened

    async def limits() -> PayloadLimits:
        gate = rt().gate
        if await rt().flags.is_enabled(Flag.SECURITY_VALIDATION):
            return gate.limits
        base = gate.limits
        return PayloadLimits(base.max_bytes * HARD_CAP_FACTOR, 1000, base.max_bytes * HARD_CAP_FACTOR,
                             base.max_bytes * HARD_CAP_FACTOR, base.max_containers * HARD_CAP_FACTOR)

    async def body_limit() -> int:
        return (await limits()).max_bytes

    async def parse_value(request: Request) -> Any:
        raw = await request.body()
        body_limits = await limits()
        # the envelope adds one level around inputs/payload, which the gate then checks exactly
        return parse_and_check(raw, dataclasses.replace(body_limits, max_depth=body_limits.max_depth + 1))

    def validated(model: type[BaseModel], value: Any) -> Any:
        try:
            return model.model_validate(value)
        except ValidationError as exc:
            problems = [f"{'.'.join(str(p) for p in e['loc']) or '(body)'}: {e['msg']}"
                        for e in exc.errors(include_url=False, include_input=False)]
            raise InvalidRequest("the body is invalid: " + "; ".join(problems), problems=problems) from None

    async def parse(request: Request, model: type[BaseModel]) -> Any:
        return validated(model, await parse_value(request))

    def tenant_of(caller: Principal, claimed: str | None) -> str:
        assert caller.tenant_id is not None
        if claimed is not None and claimed != caller.tenant_id:
            raise InvalidRequest("tenant_id must be the API key's tenant", field="tenant_id")
        return caller.tenant_id

    def rate_headers(response: Response, rate: RateDecision | None, policy: RatePolicy) -> None:
        if rate is not None:
            response.headers.update(headers(rate, policy))

    @app.exception_handler(JobForgeError)
    async def _jobforge_error(_request: Request, exc: JobForgeError) -> Response:
        return error_response(exc, rt().gate.tenant_policy if hasattr(app.state, "runtime") else None)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> Response:
        problems = [f"{'.'.join(str(p) for p in e.get('loc', ())) or '(request)'}: {e.get('msg', 'invalid')}"
                    for e in exc.errors()]
        return problem(422, "invalid_request", "the request is invalid: " + "; ".join(problems)[:2000],
                       {"problems": problems[:50]})

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return problem(exc.status_code, code, str(exc.detail), extra_headers=dict(exc.headers or {}))

    async def _infrastructure_error(request: Request, exc: Exception) -> Response:
        err, status = answer_for(exc)
        if status == 503:  # the database or Temporal went away (a restart): the caller should retry shortly
            log.warning("api_outage", error_code=err.code, error_type=type(exc).__name__)
            return error_response(err)
        if status == 400:
            log.warning("api_store_refused_value", error_type=type(exc).__name__)
            return error_response(err)
        return await _unexpected(request, exc)

    # registered per class (not under Exception), so Starlette answers without re-raising
    for infrastructure_error in (psycopg.Error, ConnectionError, RPCError, PoolTimeout):
        app.add_exception_handler(infrastructure_error, _infrastructure_error)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> Response:
        err, status = answer_for(exc)
        if status != 500:
            return error_response(err)
        if not isinstance(exc, ClientDisconnect):  # a body cut off by BodyLimit, or a client gone
            log.error("api_unexpected_error", error_type=type(exc).__name__,
                      error=redact_text(str(exc).splitlines()[0] if str(exc) else "")[:300])
        return problem(500, "internal_error", "JobForge failed to answer; the error was logged")

    @app.get("/healthz", response_model=Health, tags=["ops"])
    async def healthz() -> Response:
        """Liveness and database reachability (no authentication)."""
        try:
            await rt().store.ping()
        except JobForgeError:
            return JSONResponse({"status": "degraded", "database": "unreachable"}, status_code=503)
        return JSONResponse({"status": "ok", "database": "ok"})

    @app.post("/v1/events", status_code=202, response_model=EventReceipt, tags=["events"],
              openapi_extra=_body_schema(EventBody),
              responses={200: {"description": "a duplicate within the dedupe window"}})
    async def post_event(request: Request, caller: Caller,
                         charge: Annotated[Charge, Depends(charged(EVENTS_SUBMIT))]) -> Response:
        """Submit an event (scope ``events:write``); a duplicate answers 200 pointing at the original."""
        body: EventBody = await parse(request, EventBody)
        try:
            event = EventEnvelope(tenant_id=tenant_of(caller, body.tenant_id), event_id=body.event_id,
                                  event_type=body.event_type, trace_id=body.trace_id or "",
                                  source_app=body.source_app, source_module=body.source_module,
                                  payload=body.payload, occurred_at=body.occurred_at)
        except ValidationError as exc:
            problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                        for e in exc.errors(include_url=False, include_input=False)]
            raise InvalidRequest("the event is invalid: " + "; ".join(problems), problems=problems) from None
        runtime = rt()
        admission = await runtime.gate.admit_event(event, caller, charged=charge)
        tracing.tag_trace(admission.receipt.trace_id)
        if not admission.receipt.duplicate:
            assert runtime.temporal is not None
            await route_admitted(runtime.temporal, runtime.settings, runtime.gate, event, admission.receipt,
                                 caller.actor, stored=True)
        response = Response(admission.receipt.model_dump_json(), media_type="application/json",
                            status_code=200 if admission.receipt.duplicate else 202)
        rate_headers(response, admission.rate, admission.policy)
        return response

    @app.post("/v1/jobs", status_code=202, response_model=RunHandleInfo, tags=["jobs"],
              openapi_extra=_body_schema(JobRequestBody),
              responses={200: {"description": "the run this idempotency key already names"}})
    async def post_job(request: Request, caller: Caller,
                       charge: Annotated[Charge, Depends(charged(JOBS_REQUEST))]) -> Response:
        """Request a run of a template (the template's scopes; action jobs need a policy token)."""
        body: JobRequestBody = await parse(request, JobRequestBody)
        tenant = tenant_of(caller, body.tenant_id)
        key = body.idempotency_key or request.headers.get("idempotency-key")
        client = rt().client()
        client.principal = caller
        handle, admission = await client.submit_job(tenant, body.template_key, body.inputs, trace_id=body.trace_id,
                                                    actor=body.actor or caller.actor, idempotency_key=key,
                                                    policy_token=body.policy_token, charged=charge)
        tracing.tag_trace(handle.trace_id)
        # the run is readable at once (as queued) where Location points
        response = Response(handle.model_dump_json(), media_type="application/json",
                            status_code=202 if handle.created else 200,
                            headers={"Location": f"/v1/runs/{handle.run_id}"})
        if admission is not None:
            rate_headers(response, admission.rate, admission.policy)
        return response

    @app.post("/v1/policy-tokens", status_code=201, response_model=PolicyTokenOut, tags=["jobs"],
              openapi_extra=_body_schema(PolicyTokenBody))
    async def post_policy_token(request: Request, caller: Caller,
                                _charge: Annotated[Charge, Depends(charged(TOKENS_ISSUE_ACTION))]) -> PolicyTokenOut:
        """Issue a single-use policy token for one action run (scope ``tokens:issue`` + the template's)."""
        body: PolicyTokenBody = await parse(request, PolicyTokenBody)
        assert caller.tenant_id is not None
        issued = await rt().gate.issue_policy_token(caller, caller.tenant_id, body.template_key, body.inputs,
                                                    ttl=body.ttl_seconds)
        return PolicyTokenOut(token=issued.token, ref=issued.ref, jti=issued.jti, expires_at=issued.expires_at)

    @app.get("/v1/runs/{ident:path}/artifacts", response_model=list[ArtifactRecord], tags=["runs"])
    async def get_artifacts(ident: str, caller: Caller) -> list[ArtifactRecord]:
        """The artifacts of one of the tenant's runs (scope ``artifacts:read``)."""
        require_scopes(caller.scopes, ("artifacts:read",))
        assert caller.tenant_id is not None
        run = await rt().store.get_run(stored_id(ident, "run"), caller.tenant_id)
        return list(await rt().store.list_artifacts(caller.tenant_id, run.run_id))

    @app.get("/v1/runs/{ident:path}/replay", tags=["runs"], response_class=Response, responses={200: {
        "description": "the bundle: a reproducible .tar.gz, or replay.json with ?format=json",
        "content": {"application/gzip": {}, "application/json": {}}}})
    async def get_replay(ident: str, caller: Caller,
                         fmt: Annotated[Literal["tar", "json"], Query(alias="format")] = "tar") -> Response:
        """The replay bundle of one of the tenant's finished runs (scope ``runs:read``, REPLAY_PACK_ENABLED)."""
        from shared.replay.service import ReplayService  # with Temporal's Replayer: loaded when a bundle is asked for

        require_scopes(caller.scopes, ("runs:read",))
        assert caller.tenant_id is not None
        runtime = rt()
        bundle = await ReplayService(runtime.store, runtime.temporal, runtime.flags).bundle(stored_id(ident, "run"),
                                                                                          caller.tenant_id)
        etag = {"ETag": f'"{bundle.sha256}"'}
        if fmt == "json":
            return Response(bundle.files[REPLAY_FILE], media_type="application/json", headers=etag)
        root = f"replay-{bundle.run_id}"
        data = await asyncio.to_thread(tar_bundle, bundle.files, root)
        return Response(data, media_type="application/gzip",
                        headers={**etag, "Content-Disposition": f'attachment; filename="{root}.tar.gz"'})

    @app.get("/v1/runs/{ident:path}/sealed-secret", response_model=SealedSecret, tags=["runs"])
    async def get_sealed_secret(ident: str, caller: Caller) -> SealedSecret:
        """The new key of one of the tenant's key rotation runs (``autopilot.keys.rotation``), its secret sealed
        to the rotation's recipient key; there from the grace period on, 409 ``run_still_running`` before
        (scopes ``runs:read`` + the template's; the template's flags)."""
        runtime = rt()
        spec = runtime.registry.get(ROTATION)
        require_scopes(caller.scopes, ("runs:read", *spec.required_scopes))
        for flag in spec.flags:
            await runtime.flags.require(flag)
        assert caller.tenant_id is not None and runtime.temporal is not None
        run = await runtime.store.get_run(stored_id(ident, "run"), caller.tenant_id)
        return await sealed_secret_of(runtime.temporal, run)

    @app.get("/v1/runs/{ident:path}", response_model=RunRecord, tags=["runs"])
    async def get_run(ident: str, caller: Caller) -> RunRecord:
        """One of the tenant's runs, by run id or workflow id (scope ``runs:read``)."""
        require_scopes(caller.scopes, ("runs:read",))
        run = await rt().store.get_run(stored_id(ident, "run"), caller.tenant_id)
        temporal = rt().temporal
        return await settle(rt().store, temporal, run) if temporal is not None else run

    @app.get("/v1/audit", response_model=list[AuditEntryOut], tags=["audit"])
    async def get_audit(caller: Caller, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                        before_seq: Annotated[int | None, Query(ge=1, le=2**62)] = None) -> list[AuditEntryOut]:
        """The tenant's audit entries, newest first (scope ``audit:read``)."""
        require_scopes(caller.scopes, ("audit:read",))
        await rt().flags.require(Flag.AUDIT_LOGGING)
        assert caller.tenant_id is not None
        records = await rt().gate.audit.list(caller.tenant_id, limit=limit, before_seq=before_seq)
        return [AuditEntryOut(**record.to_json()) for record in records]

    @app.get("/v1/events/{event_type}/{event_id}", response_model=EventRouting, tags=["events"])
    async def get_event(event_type: str, event_id: str, caller: Caller,
                        first_seen_at: Annotated[datetime, Query(
                            description="the receipt's first_seen_at (RFC 3339, with a time zone)")]) -> EventRouting:
        """Where one of the tenant's events is: received, and once routed, each trigger it matched and what each
        fire decided (scope ``events:read``, JOBFORGE_EVENTS_ENABLED). The event is the copy a receipt names:
        its type, id and ``first_seen_at``."""
        require_scopes(caller.scopes, (EVENTS_READ,))
        await rt().flags.require(Flag.EVENTS)
        assert caller.tenant_id is not None
        try:
            EventEnvelope(tenant_id=caller.tenant_id, event_id=event_id, event_type=event_type)
        except ValidationError as exc:
            problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                        for e in exc.errors(include_url=False, include_input=False)]
            raise InvalidRequest("the event is named wrongly: " + "; ".join(problems), problems=problems) from None
        if first_seen_at.utcoffset() is None:
            raise InvalidRequest("first_seen_at needs a time zone (the receipt's carries one)", field="first_seen_at")
        stored = await rt().store.triggers.event(
            caller.tenant_id, route_key_at(caller.tenant_id, event_type, event_id, first_seen_at))
        if stored is None:
            raise EventNotFound(event_type, event_id)
        return EventRouting(tenant_id=stored.tenant_id, event_id=stored.event_id, event_type=stored.event_type,
                            trace_id=stored.trace_id, first_seen_at=first_seen_at, received_at=stored.received_at,
                            routed_at=stored.routed_at, routing=stored.routing)

    def triggers() -> TriggerService:
        runtime = rt()
        assert runtime.temporal is not None
        return TriggerService(runtime.store.triggers, runtime.temporal, runtime.settings, runtime.registry,
                              runtime.flags)

    @app.post("/v1/triggers", status_code=201, response_model=TriggerView, tags=["triggers"],
              openapi_extra=_body_schema(TriggerSpec))
    async def post_trigger(request: Request, caller: Caller,
                           _charge: Annotated[Charge, Depends(charged(TRIGGERS_CREATE))]) -> TriggerView:
        """Create a cron or event trigger of the key's tenant (scope ``triggers:write`` + the scopes of the
        template it runs; JOBFORGE_TRIGGERS_ENABLED). ``tenant_id`` and ``actor`` (who its scheduled fires run
        as) default to the key's and may only name them; an event trigger's fires run as the event's submitter."""
        runtime = rt()
        assert caller.tenant_id is not None
        flags = await runtime.gate.flag_values()
        name = ""
        try:
            require_scopes(caller.scopes, (TRIGGERS_WRITE,))
            await runtime.flags.require(Flag.TRIGGERS)
            value = await parse_value(request)
            if not isinstance(value, dict):
                raise InvalidRequest("the body must be a JSON object (a trigger spec)")
            name = str(value.get("name", ""))[:63]
            for field, own in (("tenant_id", caller.tenant_id), ("actor", caller.actor)):
                if value.setdefault(field, own) != own:
                    raise InvalidRequest(f"{field} must be the API key's ({own!r}) or left out", field=field)
            spec: TriggerSpec = validated(TriggerSpec, value)
            require_scopes(caller.scopes, runtime.registry.get(spec.template_key).required_scopes)
        except JobForgeError as err:
            await runtime.gate.record(flags, caller.tenant_id, caller.actor, TRIGGERS_CREATE, name, Decision.DENY,
                                      err.message)
            raise
        view = await triggers().create(spec)
        await runtime.gate.record(flags, caller.tenant_id, caller.actor, TRIGGERS_CREATE, spec.name, Decision.ALLOW,
                                  f"{spec.kind.value} trigger of {spec.template_key} created over the API",
                                  details={"template_key": spec.template_key, "kind": spec.kind.value})
        return view.public()

    @app.get("/v1/triggers", response_model=list[TriggerView], tags=["triggers"])
    async def get_triggers(caller: Caller) -> list[TriggerView]:
        """The tenant's triggers (scope ``triggers:read``, JOBFORGE_TRIGGERS_ENABLED)."""
        require_scopes(caller.scopes, (TRIGGERS_READ,))
        await rt().flags.require(Flag.TRIGGERS)
        assert caller.tenant_id is not None
        return [view.public() for view in await triggers().list(caller.tenant_id)]

    @app.get("/v1/triggers/{name}", response_model=TriggerView, tags=["triggers"])
    async def get_trigger(name: str, caller: Caller) -> TriggerView:
        """One of the tenant's triggers (scope ``triggers:read``, JOBFORGE_TRIGGERS_ENABLED)."""
        require_scopes(caller.scopes, (TRIGGERS_READ,))
        await rt().flags.require(Flag.TRIGGERS)
        assert caller.tenant_id is not None
        return (await triggers().show(caller.tenant_id, stored_id(name, "name"))).public()

    @app.get("/v1/triggers/{name}/dry-runs", response_model=list[FireRecord], tags=["triggers"])
    async def get_dry_runs(name: str, caller: Caller,
                           limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[FireRecord]:
        """What the trigger would have run, newest first: its dry-run fire records (scope ``triggers:read``,
        JOBFORGE_TRIGGERS_ENABLED)."""
        require_scopes(caller.scopes, (TRIGGERS_READ,))
        await rt().flags.require(Flag.TRIGGERS)
        assert caller.tenant_id is not None
        return list(await triggers().dry_runs(caller.tenant_id, stored_id(name, "name"), limit=limit))

    mount_console(app, rt)  # the web console at /ui (workers/console)
    return ProblemGuard(RefusalPacing(BodyLimit(app, body_limit, settings.max_payload_bytes * HARD_CAP_FACTOR), pacer))


# -- the process ---------------------------------------------------------------------------------


class ApiServer(Server):
    """uvicorn's server, answering the refusals pacing holds as soon as it starts to shut down: held, they
    would keep their connections open through the graceful shutdown (or be cut off at its end)."""

    def __init__(self, config: ServerConfig, pacer: Pacer) -> None:
        super().__init__(config)
        self.pacer = pacer

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.pacer.release_all()
        await super().shutdown(sockets)


cli = typer.Typer(add_completion=False, pretty_exceptions_enable=False, help="Run JobForge's HTTP ingress.")


@cli.command()
def run(host: str | None = typer.Option(None, help="Address to bind (default: JOBFORGE_API_HOST)."),
        port: int | None = typer.Option(None, help="Port (default: JOBFORGE_API_PORT).")) -> None:
    """Serve the HTTP API until SIGTERM or SIGINT."""
    import uvicorn

    settings = Settings()
    overrides: dict[str, Any] = {}
    if host:
        overrides["api_host"] = host
    if port is not None:
        overrides["api_port"] = port
    settings = settings.replace(**overrides) if overrides else settings
    configure(settings.log_level, settings.log_format)
    try:
        require_database(settings, "jobforge-api")
        configure_telemetry(settings, "jobforge-api", settings.api_metrics_bind)
        app = create_app(settings)
        config = uvicorn.Config(app, host=settings.api_host, port=settings.api_port,
                                log_config=None, proxy_headers=False, server_header=False, lifespan="on",
                                http=ProblemH11Protocol)
        wait_for_stack("jobforge-api")
        asyncio.run(ApiServer(config, app.pacer).serve())
    except JobForgeError as err:
        log.error("api_failed", error_code=err.code, error=err.message)
        raise typer.Exit(2) from None


def main() -> None:
    try:
        cli()
    except SystemExit as exc:
        leave(exc.code)


if __name__ == "__main__":
    main()

