"""Templates, static files and the response headers every console answer carries."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from importlib import resources
from typing import Any
from urllib.parse import urlencode

import orjson
from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from workers.console.charts import seconds

#: what the console's pages may load: their own scripts, styles and images, nothing inline, no frames
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
                ".svg": "image/svg+xml", ".json": "application/json"}

def when(value: datetime | None) -> str:
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def iso(value: datetime | None) -> str:
    return value.astimezone(UTC).isoformat(timespec="seconds") if value is not None else ""


def duration(value: float | None) -> str:
    return "—" if value is None else seconds(float(value))


def pretty(value: Any) -> str:
    """JSON for people (the value was redacted by the caller)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS,
                            default=str).decode()
    except TypeError:
        return repr(value)


def short(value: str | None, length: int = 12) -> str:
    return (value or "")[:length]


def size(value: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024  # type: ignore[assignment]
    return str(value)  # pragma: no cover


def query(params: Mapping[str, Any], **changes: Any) -> str:
    """``?a=1&b=2`` of ``params`` with ``changes`` applied, empty values left out."""
    merged = {**params, **changes}
    kept = {k: v for k, v in merged.items() if v is not None and v != ""}
    return "?" + urlencode(kept) if kept else "?"


class Static:
    """The console's static files, read once from the package, served with a content hash for caching."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, str, str]] = {}
        root = resources.files("workers.console").joinpath("static")
        for entry in root.iterdir():
            if entry.is_file() and "." in entry.name:
                suffix = entry.name[entry.name.rindex("."):]
                if suffix in STATIC_TYPES:
                    data = entry.read_bytes()
                    self.files[entry.name] = (data, hashlib.sha256(data).hexdigest()[:16], STATIC_TYPES[suffix])

    def url(self, base: str, name: str) -> str:
        return f"{base}/static/{name}?v={self.files[name][1]}"

    def response(self, name: str, request: Request) -> Response:
        found = self.files.get(name)
        if found is None:
            return Response("not found", status_code=404, media_type="text/plain")
        data, tag, media = found
        etag = f'"{tag}"'
        headers = {"ETag": etag, "Cache-Control": "public, max-age=31536000, immutable"
                   if request.query_params.get("v") == tag else "no-cache"}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(data, media_type=media, headers=headers)


class Pages:
    def __init__(self) -> None:
        self.env = Environment(loader=PackageLoader("workers.console", "templates"),
                               autoescape=select_autoescape(["html"]), undefined=StrictUndefined,
                               trim_blocks=True, lstrip_blocks=True)
        self.env.filters.update(when=when, iso=iso, duration=duration, pretty=pretty, short=short, size=size)
        self.static = Static()

    def html(self, request: Request, name: str, status: int = 200, headers: Mapping[str, str] | None = None,
             **context: Any) -> HTMLResponse:
        base = request.scope.get("root_path", "")
        context.setdefault("viewer", None)
        context.setdefault("tenant", None)
        context.setdefault("section", "")
        context.setdefault("flash", "")
        body = self.env.get_template(name).render(
            base=base, static=lambda file: self.static.url(base, file), query=query, request_path=request.url.path,
            **context)
        return HTMLResponse(body, status_code=status, headers=dict(headers or {}))

    def fragment(self, request: Request, name: str, headers: Mapping[str, str] | None = None,
                 **context: Any) -> HTMLResponse:
        return self.html(request, name, headers=headers, **context)


class Headers:
    """Pure ASGI middleware: security headers on every answer, and ``Server-Timing``: the server's time until the
    answer starts (``app``) and the process's CPU time meanwhile (``cpu``)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, cpu = time.perf_counter(), time.process_time()

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                elapsed = (time.perf_counter() - started) * 1000
                spent = (time.process_time() - cpu) * 1000  # with one request at a time: its own CPU
                extra = [(b"server-timing", f"app;dur={elapsed:.1f}, cpu;dur={spent:.1f}".encode()),
                         (b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
                         (b"referrer-policy", b"same-origin"), (b"cross-origin-opener-policy", b"same-origin")]
                if b"content-security-policy" not in names:
                    extra.append((b"content-security-policy", CSP.encode()))
                if b"cache-control" not in names:
                    extra.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers + extra}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class CatchAll:
    """Pure ASGI middleware: an error no handler took becomes the console's error page, once, not re-raised.

    (Starlette's handler for ``Exception`` answers and then re-raises, which the API around the console
    would answer a second time.)
    """

    def __init__(self, app: ASGIApp, answer: Callable[[Request, Exception], Awaitable[Response]]) -> None:
        self.app = app
        self.answer = answer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            if started:
                raise
            response = await self.answer(Request(scope), exc)
            await response(scope, receive, send)
