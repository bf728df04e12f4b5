"""The ``jobforge`` command line: ``jobforge NOUN VERB``.

Exit codes: 0 success, 1 a negative verdict, 2 usage, refusal or infrastructure error (one line on
stderr). Every command that prints data takes ``--json`` and then prints only JSON on stdout.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from workers.cli_common import (
    NegativeVerdict,
    command,
    err,
    fail,
    one_line_error,
    out,
    parse_inputs,
    print_json,
    print_table,
    run_async,
    settings,
)
from workers.cli_group import Lazy, LazyGroup

if TYPE_CHECKING:
    from pydantic import BaseModel

    from jobforge.models import RunRecord
    from shared.flags import Flag
    from shared.settings import Settings
    from shared.store import Store

R = TypeVar("R")



class JobForgeGroup(LazyGroup):
    """The root: the commands of this module, and the other ``workers/cli_*`` modules' imported on demand.
    A command added to another module is listed here, with the first paragraph of its help (a unit test
    checks that each entry loads and that its help matches)."""

    LAZY = (
        Lazy("verify", "workers.cli_verify:verify",
             "Lint, typecheck, build and test a repository through JobForge; exit 0 on pass, 1 on fail."),
        Lazy("status", "workers.cli_status:status",
             "The stack the other commands use (the running `jobforge dev`, or the configured services) and "
             "whether each part answers; exit 2 naming where the commands looked when there is none."),
        Lazy("replay", "workers.cli_replay:replay_app",
             "Replay bundles: export, verify, dry-run (REPLAY_PACK_ENABLED)."),
        Lazy("temporal", "workers.cli_ops:temporal_app", "Prepare the Temporal namespace JobForge uses."),
        Lazy("events", "workers.cli_triggers:events_app", "Submit and list events (JOBFORGE_EVENTS_ENABLED)."),
        Lazy("triggers", "workers.cli_triggers:triggers_app", "Cron and event triggers (JOBFORGE_TRIGGERS_ENABLED)."),
        Lazy("tenants", "workers.cli_security:tenants_app", "Tenants: isolated customer/app accounts."),
        Lazy("keys", "workers.cli_security:keys_app", "Tenant API keys (the secret is shown once)."),
        Lazy("tokens", "workers.cli_security:tokens_app", "Policy tokens that authorize one action run."),
        Lazy("audit", "workers.cli_security:audit_app", "The tamper-evident audit log."),
    )
    ORDER = ("templates", "dev", "verify", "status", "db", "flags", "jobs", "runs", "replay", "temporal", "events",
             "triggers", "tenants", "keys", "tokens", "audit")


app = typer.Typer(cls=JobForgeGroup, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None, help="JobForge: durable jobs on Temporal behind one security gate.")
db_app = typer.Typer(no_args_is_help=True, help="JobForge's PostgreSQL schema.")
flags_app = typer.Typer(help="Feature flags (all OFF by default) and their fleet-wide overrides.")
jobs_app = typer.Typer(no_args_is_help=True, help="Request jobs.")
runs_app = typer.Typer(no_args_is_help=True, help="Look at runs.")
app.add_typer(db_app, name="db")
app.add_typer(flags_app, name="flags")
app.add_typer(jobs_app, name="jobs")
app.add_typer(runs_app, name="runs")


# -- db --------------------------------------------------------------------------------------------


@db_app.command("upgrade")
@command
def db_upgrade(revision: str = typer.Argument("head")) -> None:
    """Apply migrations up to REVISION (default: head)."""
    from shared.store.migrate import upgrade
    from workers.stack import database_url

    upgrade(database_url(settings()), revision)
    out.print(f"database at {revision}")


@db_app.command("current")
@command
def db_current(as_json: bool = typer.Option(False, "--json")) -> None:
    """Show the schema revision of the database and of the code."""
    from shared.store import Store
    from shared.store.migrate import head_revision
    from workers.stack import database_url

    async def go() -> str | None:
        async with Store.opened(database_url(settings())) as store:
            await store.ping()
            return await store.schema_revision()

    current, head = run_async(go()), head_revision()
    if as_json:
        print_json({"current": current, "head": head, "at_head": current == head})
    else:
        out.print(f"database: {current or 'not migrated'}  code: {head}")
    if current != head:
        raise NegativeVerdict("the database is not at the migrations' head: run `jobforge db upgrade`")


# -- flags -----------------------------------------------------------------------------------------


async def _flag_values(s: Settings) -> list[dict[str, Any]]:
    """Every flag's value as the workers read it (beside a running ``jobforge dev``: the environment of its
    workers, not this shell's), the store's overrides read over one plain psycopg connection
    (shared.store.direct: no SQLAlchemy, so the command answers quickly)."""
    from shared.flags import FlagReader
    from shared.store import direct
    from workers.stack import stack_flag_reader

    async def values(reader: FlagReader) -> list[dict[str, Any]]:
        return [{"name": v.flag.value, "enabled": v.enabled, "source": v.source.value}
                for v in await reader.values()]

    url = s.database_url_value()
    if not url:
        return await values(FlagReader(None, 0))
    async with direct.connect(url) as conn:
        def load() -> Awaitable[dict[Flag, bool]]:
            return direct.flag_overrides(conn)

        return await values(stack_flag_reader(s, load, 0) or FlagReader(load, 0))


@flags_app.callback(invoke_without_command=True)
@command
def flags_list(ctx: typer.Context, as_json: bool = typer.Option(False, "--json")) -> None:
    """Every flag, its value and where the value came from (default / env / store)."""
    if ctx.invoked_subcommand:
        return
    rows = run_async(_flag_values(settings(logs=False)))  # its path logs nothing: no structlog to import
    if as_json:
        print_json(rows)
        return
    from rich.table import Table

    table = Table("flag", "value", "source")
    for row in rows:
        table.add_row(row["name"], "[green]on[/]" if row["enabled"] else "off", row["source"])
    print_table(table)


async def _store_call(fn: Callable[[Store], Awaitable[R]]) -> R:
    from shared.store import Store
    from workers.stack import database_url

    async with Store.opened(database_url(settings())) as store:
        return await fn(store)


async def _change(store: Store, flag: Flag, enabled: bool | None, actor: str, reason: str) -> Any:
    from shared.kill_switch import change_override

    return await change_override(store, store.audit, flag, enabled, actor=actor, reason=reason)


@flags_app.command("set")
@command
def flags_set(name: str, value: str, reason: str = typer.Option("", help="Why (kept with the override)."),
              actor: str = typer.Option("cli")) -> None:
    """Override flag NAME fleet-wide (on|off); running workers honour it within seconds."""
    from shared.flags import Flag, parse_switch

    flag, enabled = Flag.parse(name), parse_switch(value)
    change = run_async(_store_call(lambda store: _change(store, flag, enabled, actor, reason)))
    out.print(f"{flag.value} = {'on' if enabled else 'off'} (store override"
              f"{', on the fleet audit chain' if change.audited else ''})")


@flags_app.command("unset")
@command
def flags_unset(name: str, actor: str = typer.Option("cli")) -> None:
    """Remove the store override of flag NAME (its env value or default applies again)."""
    from shared.flags import Flag

    flag = Flag.parse(name)
    change = run_async(_store_call(lambda store: _change(store, flag, None, actor, "")))
    out.print(f"{flag.value}: override {'removed' if change.had_override else 'was not set'}")


# -- templates -------------------------------------------------------------------------------------


@app.command("templates")
@command
def templates(as_json: bool = typer.Option(False, "--json"),
              wide: bool = typer.Option(False, "--wide", help="Whole cells on a terminal too (they are whole in a "
                                        "pipe or file).")) -> None:
    """The registered job templates; --json adds what starting one through Temporal takes: workflow type,
    task queue, search attributes and the JSON Schemas of its argument (JobRun) and inputs."""
    from shared.templates import describe, load_registry

    s = settings()
    registry = load_registry(s)
    rows = [describe(t, s) for t in registry]
    if as_json:
        print_json(rows)
        return
    from rich.table import Table

    table = Table("template", "queue", "action", "scopes", "flags", "description")
    for row in rows:
        table.add_row(row["key"], row["task_queue"], "yes" if row["action"] else "no",
                      ",".join(row["required_scopes"]), ",".join(row["flags"]), row["description"])
    print_table(table, wide=wide)


# -- jobs and runs ---------------------------------------------------------------------------------


def _verdict(result: BaseModel) -> bool:
    for field in ("healthy", "passed"):
        value = getattr(result, field, None)
        if isinstance(value, bool):
            return value
    return True


@jobs_app.command("request")
@command
def jobs_request(
    template: str,
    tenant: str = typer.Option(..., "--tenant", "-t"),
    inputs: str | None = typer.Option(None, "--inputs", "-i", help="JSON object, or @file.json"),
    idempotency_key: str | None = typer.Option(None, "--idempotency-key"),
    trace_id: str | None = typer.Option(None, "--trace-id"),
    actor: str = typer.Option("cli", "--actor"),
    policy_token: str | None = typer.Option(None, "--policy-token",
                                            help="For action jobs: a token from `jobforge tokens issue`."),
    wait: bool = typer.Option(False, "--wait", help="Wait for the run and print its result."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Request a run of TEMPLATE for a tenant."""
    from workers.runtime import open_runtime

    parsed = parse_inputs(inputs)

    async def go() -> tuple[Any, BaseModel | None]:
        async with open_runtime(settings(), stack_flags=True) as rt:
            client = rt.client()
            handle = await client.request_job(tenant, template, parsed, trace_id=trace_id, actor=actor,
                                              idempotency_key=idempotency_key, policy_token=policy_token)
            if not as_json:
                verb = "started" if handle.created else "already exists (same idempotency key)"
                err.print(f"run {handle.run_id} {verb}: workflow {handle.workflow_id}", highlight=False)
            result = await client.result(handle) if wait else None
            return handle, result

    handle, result = run_async(go())
    if as_json:
        print_json({"run": handle, "result": result})
    elif result is not None:
        out.print_json(result.model_dump_json())
    else:
        out.print(handle.run_id)
    if result is not None and not _verdict(result):
        raise NegativeVerdict(f"{template}: negative verdict")


def _run_row(run: RunRecord) -> dict[str, Any]:
    return run.model_dump(mode="json")


@runs_app.command("list")
@command
def runs_list(tenant: str = typer.Option(..., "--tenant", "-t"), limit: int = typer.Option(50, min=1, max=1000),
              as_json: bool = typer.Option(False, "--json"),
              wide: bool = typer.Option(False, "--wide", help="Whole ids and template keys on a terminal too (they "
                                        "are whole in a pipe or file).")) -> None:
    """A tenant's runs, newest first."""
    from jobforge.ids import check_tenant_id
    from shared.store import direct
    from workers.stack import database_url

    check_tenant_id(tenant)
    s = settings(logs=False)  # its path logs nothing: no structlog to import

    async def go() -> list[RunRecord]:  # one plain psycopg connection: no SQLAlchemy (shared.store.direct)
        async with direct.connect(database_url(s)) as conn:
            await direct.require_tenant(conn, tenant)  # a mistyped tenant is unknown_tenant, not an empty list
            return await direct.runs(conn, tenant, None, limit)

    runs = run_async(go())
    if as_json:
        print_json([_run_row(r) for r in runs])
        return
    from rich.table import Table

    table = Table("run id", "template", "status", "created", "trace")
    for r in runs:
        table.add_row(r.run_id, r.template_key, r.status.value, r.created_at.isoformat(timespec="seconds"),
                      r.trace_id)
    print_table(table, wide=wide)


async def _finished(ident: str, tenant: str | None) -> RunRecord:
    """The run once it has finished: its workflow's result is awaited, then its record read again."""
    from temporalio.client import WorkflowFailureError
    from temporalio.service import RPCError

    from shared.stale_runs import settle
    from workers.runtime import open_runtime

    async with open_runtime(settings(), stack_flags=True, tenant=tenant) as rt:
        run = await rt.store.get_run(ident, tenant)
        if run.status.is_final:
            return run
        assert rt.temporal is not None
        handle = rt.temporal.get_workflow_handle(run.workflow_id, run_id=run.run_id)
        with contextlib.suppress(WorkflowFailureError, RPCError):  # a failed run's record says why
            await handle.result()
        # a workflow closed before admission (terminated, timed out) leaves its record queued: settle it
        return await settle(rt.store, rt.temporal, await rt.store.get_run(run.run_id, run.tenant_id))


async def _shown(ident: str, tenant: str | None) -> RunRecord:
    """The run's record; one still ``queued`` is checked against Temporal first (its workflow may have
    closed before admission: shared/stale_runs.py), unless Temporal cannot be reached."""
    from temporalio.service import RPCError

    from jobforge.errors import JobForgeError
    from jobforge.models import RunStatus
    from shared.stale_runs import settle
    from shared.temporal import connect
    from workers.runtime import open_runtime

    async with open_runtime(settings(), temporal=False, tenant=tenant) as rt:
        run = await rt.store.get_run(ident, tenant)
        if run.status is RunStatus.QUEUED:
            with contextlib.suppress(JobForgeError, RPCError, RuntimeError):
                run = await settle(rt.store, await connect(rt.settings), run)
        return run


@runs_app.command("show")
@command
def runs_show(ident: str = typer.Argument(..., metavar="ID", help="Run id or workflow id."),
              tenant: str | None = typer.Option(None, "--tenant", "-t"),
              wait: bool = typer.Option(False, "--wait", help="Wait until the run has finished; exit 1 unless it "
                                        "succeeded."),
              as_json: bool = typer.Option(False, "--json")) -> None:
    """One run, by run id or workflow id (readable as soon as its id is handed out: queued, then running)."""
    run = run_async(_finished(ident, tenant) if wait else _shown(ident, tenant))
    if as_json:
        print_json(_run_row(run))
    else:
        for key, value in _run_row(run).items():
            out.print(f"[bold]{key}[/]: {json.dumps(value) if isinstance(value, dict) else value}", highlight=False)
    from jobforge.models import RunStatus

    if wait and run.status is not RunStatus.SUCCEEDED:
        raise NegativeVerdict("" if as_json else f"run {run.run_id} {run.status.value}"
                              + ("" if run.status.is_final else ": its workflow closed without recording an outcome"))


# -- dev -------------------------------------------------------------------------------------------


@app.command("dev")
@command
def dev(
    temporal_port: int = typer.Option(7233, help="Temporal gRPC port."),
    ui_port: int = typer.Option(8233, help="Temporal Web UI port."),
    pg_port: int = typer.Option(54329, help="Embedded PostgreSQL port (unused with JOBFORGE_DATABASE_URL)."),
    api_port: int = typer.Option(8080, min=0, max=65535, help="HTTP API (jobforge-api) port; 0 = no API."),
    workers: int = typer.Option(1, min=0, max=16, help="Worker processes to start."),
    headless: bool = typer.Option(False, help="No Temporal Web UI."),
    run: str | None = typer.Option(None, "--run", help="Run this template once the stack is up, print its "
                                   "result, stop the stack and exit (0 ok, 1 negative verdict)."),
    tenant: str = typer.Option("demo", "--tenant", help="Tenant for --run."),
    inputs: str | None = typer.Option(None, "--inputs", help="Inputs for --run (JSON or @file)."),
    enable: list[str] = typer.Option([], "--enable", metavar="FLAG", help="Turn feature flag FLAG on in the "
                                     "environment of the stack's workers and API (repeatable)."),
) -> None:
    """Start the embedded stack: Temporal dev server, PostgreSQL, migrations and workers."""
    from shared.flags import Flag
    from shared.logs import configure
    from shared.settings import Secret, Settings
    from workers.dev import DevPorts, DevStack

    enabled = [Flag.parse(name) for name in enable]

    s = Settings()
    configure(s.log_level, s.log_format)
    # SIGTERM (a supervisor, `kill`) stops the stack as cleanly as Ctrl-C; SIGINT is restored too, since a
    # shell that starts us in the background hands us SIGINT ignored
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    stack = DevStack(s, DevPorts(temporal_port, ui_port, pg_port, api_port), workers=workers, headless=headless,
                     enable=enabled)
    parsed = parse_inputs(inputs) if run else {}
    try:
        state = stack.start()
        err.print(f"JobForge dev stack up ({s.home.resolve()})\n"
                  f"  Temporal gRPC : {state.temporal_address} (namespace {s.temporal_namespace})\n"
                  f"  Temporal UI   : {state.ui_url or '(headless)'}\n"
                  f"  PostgreSQL    : {state.database_url}\n"
                  f"  HTTP API      : {state.api_url or '(none)'}\n"
                  f"  Console       : {stack.console_url or '(none)'}\n"
                  + (f"  operator token: {stack.console_token}\n" if stack.console_url else "") +
                  f"  workers       : {workers} (logs in {stack.logs})\n"
                  f"  flags on      : {', '.join(_flags_on(state.flag_env)) or 'none in the environment'} "
                  "(`jobforge flags` shows every flag)", highlight=False)
        if run:
            _run_once(s.replace(temporal_address=state.temporal_address,
                                           database_url=Secret(state.database_url)), run, tenant, parsed)
            return
        err.print("Ctrl-C stops the stack; data stays in the home directory.", highlight=False)
        problem = stack.wait_until_stopped()
        if problem:
            raise fail(problem)
    except KeyboardInterrupt:
        err.print("stopping...", highlight=False)
    finally:
        stack.stop()


def _flags_on(env: dict[str, str]) -> list[str]:
    from shared.flags import Flag, resolve

    return [flag.value for flag in Flag if resolve(flag, env, {}).enabled]


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _run_once(s: Settings, template: str, tenant: str, inputs: dict[str, Any]) -> None:
    from workers.runtime import open_runtime

    async def go() -> BaseModel:
        async with open_runtime(s, stack_flags=True) as rt:  # --enable reached the workers, not this process
            client = rt.client()
            handle = await client.request_job(tenant, template, inputs, actor="jobforge-dev")
            err.print(f"run {handle.run_id} of {template} started (workflow {handle.workflow_id})",
                      highlight=False)
            return await client.result(handle)

    result = run_async(go())
    out.print_json(result.model_dump_json())
    if not _verdict(result):
        raise NegativeVerdict(f"{template}: negative verdict")


def main() -> None:
    code: int | str | None = 0
    try:
        app()
    except SystemExit as exc:
        code = exc.code
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        code = 130
    except Exception as exc:  # whatever no command mapped: one line and exit 2, never a traceback
        sys.stderr.write(one_line_error(exc) + "\n")
        code = 2
    if isinstance(code, str):
        sys.stderr.write(code + "\n")
    # The Temporal SDK can abort the interpreter at teardown (sdk-python #300, PyGILState_Release),
    # which would replace the command's exit status with SIGABRT: flush, then leave without finalising.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if isinstance(code, int) else (0 if code is None else 1))


if __name__ == "__main__":
    main()
