"""The execution-plane console: what Temporal's UI cannot show, served by ``jobforge-api`` at ``/ui``.

Tenants, the gate's decisions, events and their routing, triggers and their fire decisions, the
audit chain, artifacts, manifests, provenance, replay bundles and the flags. Server-rendered pages
(Jinja2, SVG charts), htmx for what changes while one looks; see ``docs/console.md``.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI

from workers.runtime import Runtime

#: where ``jobforge-api`` serves the console
PATH = "/ui"


def mount(app: FastAPI, runtime: Callable[[], Runtime]) -> None:
    """Serve the console under :data:`PATH` of ``app`` (``runtime`` gives the app's runtime once it is open)."""
    from workers.console.app import create_console

    app.mount(PATH, create_console(runtime))
