"""Who is looking: console sessions, the principal behind them, CSRF and origin checks.

Sign-in authenticates exactly as the HTTP API does (:meth:`TenantStore.authenticate` on the API key),
and every request re-derives the principal from the key's current row
(:meth:`TenantStore.principal_of_key`), so a revoked key or a narrowed scope takes effect at once.
Pages then apply the API's own checks: :meth:`Principal.may_act_for` and :func:`require_scopes`.

The browser holds only a random session id, in an HttpOnly, SameSite=Strict cookie scoped to the
console's path; the key itself is never stored by the browser nor kept by the server. Every form that
changes state carries the session's CSRF token, and a request whose ``Origin`` or ``Sec-Fetch-Site``
names another site is refused.

An operator signs in with the operator token (``JOBFORGE_CONSOLE_OPERATOR_TOKEN``; ``jobforge dev``
makes a fresh one at each start and prints it). Without that setting there is no operator sign-in.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl

import structlog
from fastapi import Request
from fastapi.responses import Response

from jobforge.errors import CsrfRejected, InvalidRequest, TenantForbidden, Unauthenticated
from jobforge.ids import check_tenant_id
from shared.security.principal import Principal
from shared.security.scopes import missing_scopes, require_scopes
from shared.settings import Settings
from shared.store.sessions import ConsoleSession, ConsoleSessions, digest
from workers.runtime import Runtime

log = structlog.get_logger("jobforge.console")

SESSION_COOKIE = "jobforge_console"
#: the sign-in form's CSRF value (double submit: cookie and hidden field), before any session exists
LOGIN_COOKIE = "jobforge_console_login"
OPERATOR_ACTOR = "console:operator"
FORM = "application/x-www-form-urlencoded"
#: the largest form body the console reads
MAX_FORM_BYTES = 16_384

#: scopes the console's pages need, named as the HTTP API names the same reads
RUNS_READ = "runs:read"
ARTIFACTS_READ = "artifacts:read"
AUDIT_READ = "audit:read"
EVENTS_READ = "events:read"
TRIGGERS_READ = "triggers:read"
#: pause, resume and fire now
TRIGGERS_WRITE = "triggers:write"


@dataclass(frozen=True, slots=True)
class Viewer:
    """The signed-in principal of a request and its session."""

    principal: Principal
    session: ConsoleSession
    token: str

    @property
    def is_operator(self) -> bool:
        return self.principal.is_operator

    @property
    def actor(self) -> str:
        """How the console's actions are audited: the key (``console:key:<id>``) or the operator."""
        return OPERATOR_ACTOR if self.is_operator else f"console:{self.principal.actor}"

    def scope(self, tenant_id: str, *scopes: str) -> str:
        """``tenant_id`` when this viewer may read it with ``scopes`` (the HTTP API's checks), else an error."""
        check_tenant_id(tenant_id)
        if not self.principal.may_act_for(tenant_id):
            raise TenantForbidden(tenant_id)
        require_scopes(self.principal.scopes, scopes)
        return tenant_id

    def may(self, *scopes: str) -> bool:
        """Whether the viewer holds ``scopes`` (to show or hide an action; the action checks again)."""
        return not missing_scopes(self.principal.scopes, scopes)


def operator_digest(settings: Settings) -> str | None:
    token = settings.console_operator_token
    return digest(token.get_secret_value()) if token is not None else None


def secure_cookies(settings: Settings, request: Request) -> bool:
    if settings.console_secure_cookies is not None:
        return settings.console_secure_cookies
    return request.url.scheme == "https"


class Auth:
    """The console's sessions over one runtime."""

    def __init__(self, runtime: Callable[[], Runtime]) -> None:
        self._runtime = runtime
        self._sessions: ConsoleSessions | None = None

    @property
    def runtime(self) -> Runtime:
        return self._runtime()

    @property
    def sessions(self) -> ConsoleSessions:
        if self._sessions is None:
            self._sessions = self.runtime.store.sessions
        return self._sessions

    async def viewer(self, request: Request) -> Viewer:
        """The request's viewer; :class:`Unauthenticated` when it has no live session."""
        token = request.cookies.get(SESSION_COOKIE, "")
        session = await self.sessions.get(token) if token else None
        if session is None:
            raise Unauthenticated("sign in to the console")
        rt = self.runtime
        if session.key_id is not None:
            try:
                principal = await rt.gate.tenants.principal_of_key(session.key_id)
            except Unauthenticated:
                await self.sessions.close(token)
                log.info("console_session_ended", reason="key_revoked", key_id=session.key_id)
                raise Unauthenticated("the API key of this session was revoked; sign in again") from None
        else:
            current = operator_digest(rt.settings)
            if current is None or session.operator_sha256 is None or not hmac.compare_digest(
                    current, session.operator_sha256):
                await self.sessions.close(token)
                raise Unauthenticated("the operator token changed; sign in again")
            principal = Principal.operator(OPERATOR_ACTOR, tuple(rt.settings.operator_scopes))
        return Viewer(principal, session, token)

    async def sign_in_key(self, presented: str) -> tuple[str, Principal]:
        """A session for an API key, authenticated as the HTTP API authenticates it."""
        rt = self.runtime
        principal = await rt.gate.tenants.authenticate(presented)
        opened = await self.sessions.open(actor=principal.actor, ttl_seconds=rt.settings.console_session_ttl_seconds,
                                          tenant_id=principal.tenant_id, key_id=principal.key_id)
        return opened.token, principal

    async def sign_in_operator(self, presented: str) -> str:
        rt = self.runtime
        current = operator_digest(rt.settings)
        if current is None:
            raise Unauthenticated("operator sign-in is off here (JOBFORGE_CONSOLE_OPERATOR_TOKEN is not set)")
        if not hmac.compare_digest(current, digest(presented.strip())):
            raise Unauthenticated("that operator token was not accepted")
        opened = await self.sessions.open(actor=OPERATOR_ACTOR, ttl_seconds=rt.settings.console_session_ttl_seconds,
                                          operator_sha256=current)
        return opened.token

    async def sign_out(self, token: str) -> None:
        await self.sessions.close(token)


def set_session_cookie(response: Response, token: str, settings: Settings, request: Request, base: str) -> None:
    response.set_cookie(SESSION_COOKIE, token, max_age=settings.console_session_ttl_seconds, path=base or "/",
                        httponly=True, samesite="strict", secure=secure_cookies(settings, request))


def new_login_token() -> str:
    return secrets.token_urlsafe(24)


def check_origin(request: Request) -> None:
    """Refuse a state-changing request sent from another site (``Origin``, ``Sec-Fetch-Site``)."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        raise CsrfRejected()
    origin = request.headers.get("origin")
    if origin is not None and origin != "null":
        own = f"{request.url.scheme}://{request.url.netloc}"
        if origin != own:
            raise CsrfRejected()
    elif origin == "null":
        raise CsrfRejected()


async def read_form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (the console's forms), bounded in size."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != FORM:
        raise InvalidRequest("the console's forms are sent as application/x-www-form-urlencoded")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise InvalidRequest(f"the form is over {MAX_FORM_BYTES} bytes")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False,
                          max_num_fields=50)
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequest("the form could not be read") from None
    return dict(pairs)


async def checked_form(request: Request, viewer: Viewer) -> dict[str, str]:
    """The form of a state-changing request, once its origin and CSRF token are right."""
    check_origin(request)
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != FORM:
        raise CsrfRejected()  # not one of the console's forms, so it carries no token
    form = await read_form(request)
    if not hmac.compare_digest(form.get("csrf_token", "").encode(), viewer.session.csrf_token.encode()):
        log.warning("console_csrf_rejected", path=request.url.path, actor=viewer.actor)
        raise CsrfRejected()
    return form


Dependency = Callable[[Request], Awaitable[Viewer]]
