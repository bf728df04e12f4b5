"""The execution-plane console: what Temporal's UI cannot show, served by ``jobforge-api`` at ``/ui``.

Tenants, the gate's decisions, events and their routing, triggers and their fire decisions, the
audit chain, artifacts, manifests, provenance, replay bundles and the flags. Server-rendered pages
(Jinja2, SVG charts), htmx for what changes while one looks; see ``docs/console.md``.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from workers.runtime import Runtime

#: where ``jobforge-api`` serves the console
PATH = "/ui"


class Console:
    """The console's ASGI app, built on its first request: its modules (Jinja2, the pages, its routes) are
    imported then, not while ``jobforge-api`` starts."""

    def __init__(self, runtime: Callable[[], Runtime]) -> None:
        self.runtime = runtime
        self.app: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.app is None:  # built without awaiting: concurrent first requests build it once
            from workers.console.app import create_console

            self.app = create_console(self.runtime)
        await self.app(scope, receive, send)


def mount(app: FastAPI, runtime: Callable[[], Runtime]) -> None:
    """Serve the console under :data:`PATH` of ``app`` (``runtime`` gives the app's runtime once it is open)."""
    app.mount(PATH, Console(runtime))
