"""``jobforge status``: the stack the other commands use, whether each part answers, or where they looked."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from typing import Any

import typer
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from jobforge.errors import JobForgeError, StackNotFound
from shared.settings import Settings
from workers.cli_common import NegativeVerdict, command, out, print_json, run_async
from workers.stack import StackState, effective_settings, where_looked

CHECK_TIMEOUT = 5.0


def _masked(url: str) -> str:
    """A database URL fit to print (no password)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "(unparseable URL)"


async def _database(url: str) -> str:
    from shared.store import Store

    async with Store.opened(url, 1) as store:
        try:
            await asyncio.wait_for(store.ping(), CHECK_TIMEOUT)
            return "ok"
        except (JobForgeError, TimeoutError) as exc:
            return f"unreachable ({exc})" if isinstance(exc, JobForgeError) else "unreachable (timed out)"


async def _temporal(settings: Settings) -> str:
    from shared.temporal import connect

    try:
        client = await asyncio.wait_for(connect(settings), CHECK_TIMEOUT)
        await asyncio.wait_for(client.service_client.check_health(), CHECK_TIMEOUT)
        return "ok"
    except (JobForgeError, TimeoutError, RuntimeError) as exc:
        return f"unreachable ({exc})" if str(exc) else "unreachable (timed out)"


def _api(url: str) -> str:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=CHECK_TIMEOUT) as answer:
            body = json.loads(answer.read())
        return "ok" if body.get("status") == "ok" else f"degraded ({body})"
    except urllib.error.HTTPError as exc:
        return f"degraded (HTTP {exc.code})"
    except (OSError, ValueError) as exc:
        return f"unreachable ({type(exc).__name__})"


@command
def status(api_url: bool = typer.Option(False, "--api-url", help="Print only the HTTP API's URL (for scripts)."),
           as_json: bool = typer.Option(False, "--json")) -> None:
    """The stack the other commands use (the running `jobforge dev`, or the configured services) and whether
    each part answers; exit 2 naming where the commands looked when there is none."""
    base = Settings()
    state = StackState.read(base.state_file)
    settings = effective_settings(base)
    database = settings.database_url_value()
    if not database:
        raise StackNotFound(f"no JobForge stack found: {where_looked(base)}. Start one with `jobforge dev`, or "
                            "point JOBFORGE_DATABASE_URL and JOBFORGE_TEMPORAL_ADDRESS at one")
    api = state.api_url if state is not None else ""
    if api_url:
        if not api:
            raise StackNotFound("no HTTP API is known here: the running `jobforge dev` was started with "
                                "--api-port 0" if state is not None else
                                "no HTTP API is known here: the services are configured by the environment, "
                                "not by a running `jobforge dev`")
        out.print(api, highlight=False, soft_wrap=True)
        return

    async def checks() -> tuple[str, str]:
        return await _database(database), await _temporal(settings)

    db_status, temporal_status = run_async(checks())
    row: dict[str, Any] = {
        "source": "jobforge dev" if state is not None else "environment",
        "state_file": str(base.state_file.resolve()) if state is not None else None,
        "pid": state.pid if state is not None else None,
        "home": state.home if state is not None else None,
        "temporal": {"address": settings.temporal_address, "namespace": settings.temporal_namespace,
                     "status": temporal_status},
        "database": {"url": _masked(database), "status": db_status},
        "api": {"url": api, "status": _api(api)} if api else None,
        "ui": state.ui_url if state is not None and state.ui_url else None,
    }
    healthy = db_status == "ok" and temporal_status == "ok" and (not api or row["api"]["status"] == "ok")
    if as_json:
        print_json({**row, "healthy": healthy})
    else:
        origin = (f"jobforge dev (pid {state.pid}) from {row['state_file']}" if state is not None
                  else "the environment (JOBFORGE_DATABASE_URL, JOBFORGE_TEMPORAL_ADDRESS)")
        out.print(f"stack      : {origin}", highlight=False, soft_wrap=True)
        out.print(f"Temporal   : {settings.temporal_address} (namespace {settings.temporal_namespace}) "
                  f"{temporal_status}", highlight=False, soft_wrap=True)
        out.print(f"PostgreSQL : {row['database']['url']} {db_status}", highlight=False, soft_wrap=True)
        if api:
            out.print(f"HTTP API   : {api} {row['api']['status']}", highlight=False, soft_wrap=True)
        if row["ui"]:
            out.print(f"Temporal UI: {row['ui']}", highlight=False, soft_wrap=True)
    if not healthy:
        raise NegativeVerdict("" if as_json else "a part of the stack does not answer")
