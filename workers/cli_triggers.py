"""``jobforge events ...`` and ``jobforge triggers ...``."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import typer
from pydantic import ValidationError
from rich.table import Table

from jobforge.errors import InvalidRequest, ScheduleMissing
from jobforge.ids import check_tenant_id
from jobforge.models import (
    EventEnvelope,
    EventReceipt,
    OverlapPolicy,
    RouteEventResult,
    SafetyConfig,
    TriggerKind,
    TriggerSpec,
    strict_safety_config,
)
from shared.triggers.models import StoredEvent
from shared.triggers.schedules import seconds_text
from shared.triggers.service import TriggerChanges, TriggerService, TriggerView
from workers.cli_common import command, out, parse_inputs, print_json, print_table, run_async, settings
from workers.runtime import Runtime, open_runtime

events_app = typer.Typer(no_args_is_help=True, help="Submit and list events (JOBFORGE_EVENTS_ENABLED).")
triggers_app = typer.Typer(no_args_is_help=True, help="Cron and event triggers (JOBFORGE_TRIGGERS_ENABLED).")


def _service(rt: Runtime) -> TriggerService:
    assert rt.temporal is not None
    return TriggerService(rt.store.triggers, rt.temporal, rt.settings, rt.registry, rt.flags)


def _typed(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'trigger'}: {e['msg']}"
                             for e in exc.errors(include_url=False, include_input=False))
        raise InvalidRequest(problems) from None


# -- events ----------------------------------------------------------------------------------------


@events_app.command("submit")
@command
def events_submit(
    tenant: str = typer.Option(..., "--tenant", "-t"),
    event_type: str = typer.Option(..., "--type"),
    payload: str | None = typer.Option(None, "--payload", help="JSON object, or @file.json"),
    event_id: str | None = typer.Option(None, "--event-id", help="Default: a new uuid."),
    trace_id: str = typer.Option("", "--trace-id"),
    source_app: str = typer.Option("cli", "--source-app"),
    source_module: str = typer.Option("", "--source-module"),
    wait: bool = typer.Option(False, "--wait", help="Wait until it is routed and show each trigger's verdict."),
    timeout: float = typer.Option(60.0, "--timeout", min=0.1, help="With --wait: seconds to wait."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Submit an event: gate (limits, dedupe, rate limit, scopes, audit), store, route to triggers."""
    envelope = _typed(lambda: EventEnvelope(
        tenant_id=tenant, event_id=event_id or uuid.uuid4().hex, event_type=event_type, trace_id=trace_id,
        source_app=source_app, source_module=source_module, payload=parse_inputs(payload),
        occurred_at=datetime.now(UTC)))

    async def go() -> tuple[EventReceipt, RouteEventResult | None]:
        async with open_runtime(settings(), stack_flags=True, tenant=tenant) as rt:
            client = rt.client()
            receipt = await client.submit_event(envelope)
            routed = await client.wait_routed(receipt, timeout) if wait and not receipt.duplicate else None
            return receipt, routed

    receipt, routed = run_async(go())
    if as_json:
        print_json({"receipt": receipt.model_dump(mode="json"),
                    "routing": routed.model_dump(mode="json") if routed else None} if wait else receipt)
    elif receipt.duplicate:
        out.print(f"duplicate of the copy first seen at {receipt.first_seen_at.isoformat()} "
                  f"(trace {receipt.original_trace_id}); nothing fired", highlight=False)
    else:
        out.print(f"event {receipt.event_id} accepted (trace {receipt.trace_id})", highlight=False)
        if routed is not None:
            if not routed.fires:
                out.print("  no trigger matched", highlight=False)
            for fire in routed.fires:
                what = f" → run {fire.run_workflow_id}" if fire.run_workflow_id else ""
                why = f" ({'; '.join(fire.reasons)})" if fire.reasons else ""
                out.print(f"  {fire.trigger_name}: {fire.verdict.value}{why}{what}", highlight=False)


def _routing(event: StoredEvent) -> str:
    """How an event was routed, in a few words: each fire's trigger and verdict."""
    if event.routing is None:
        return "pending" if event.routed_at is None else "yes"
    if not event.routing.fires:
        return "no trigger matched"
    return ", ".join(f"{f.trigger_name}: {f.verdict.value}" for f in event.routing.fires)


@events_app.command("list")
@command
def events_list(tenant: str = typer.Option(..., "--tenant", "-t"),
                event_type: str | None = typer.Option(None, "--type"),
                limit: int = typer.Option(100, min=1, max=1000),
                as_json: bool = typer.Option(False, "--json")) -> None:
    """A tenant's stored events, newest first."""
    check_tenant_id(tenant)

    async def go() -> Any:
        async with open_runtime(settings(), temporal=False, stack_flags=True, tenant=tenant) as rt:
            return await rt.store.triggers.events(tenant, event_type=event_type, limit=limit)

    events = run_async(go())
    if as_json:
        print_json([e.model_dump(mode="json") for e in events])
        return
    table = Table("received", "type", "event id", "source", "trace", "routed")
    for e in events:
        table.add_row(e.received_at.isoformat(timespec="seconds"), e.event_type, e.event_id, e.source_app, e.trace_id,
                      _routing(e))
    print_table(table)


# -- triggers --------------------------------------------------------------------------------------


def _print_view(view: TriggerView) -> None:
    t = view.trigger
    live = view.live
    if t.kind is TriggerKind.EVENT:
        what = f"event {t.event_pattern}"
    elif live is not None:
        what = f"{live.spec} ({live.timezone})"
    else:
        what = (f"cron {t.cron!r}" if t.cron else f"every {t.interval_seconds:g}s") + f" ({t.timezone})"
    out.print(f"[bold]{t.name}[/] ({view.state}) {what} → {t.template_key}", highlight=False)
    s = t.safety
    out.print(f"  safety: dry_run={s.dry_run} cooldown={s.cooldown_seconds:g}s max_runs={s.max_runs} "
              f"window={s.window_seconds:g}s allow={list(s.allow)} deny={list(s.deny)}", highlight=False)
    if view.strict:
        out.print("  strict: every fire must match an allow-list entry"
                  + (", and it is a dry run: recorded, not started" if s.dry_run else "")
                  + f" (relax with `jobforge triggers update {t.name} --tenant {t.tenant_id} --no-strict`)",
                  highlight=False)
    elif s.dry_run:
        out.print("  dry run: each fire is recorded, not started "
                  f"(`jobforge triggers update {t.name} --tenant {t.tenant_id} --no-dry-run` starts runs)",
                  highlight=False)
    if view.skips:
        out.print(f"  [bold]skips:[/] {view.skips}", highlight=False)
    if live is not None:
        jitter = f", jitter {seconds_text(live.jitter_seconds)}" if live.jitter_seconds else ""
        paused = ("paused" if live.paused else "running") + (f" ({live.note})" if live.note else "")
        out.print(f"  schedule: {view.schedule_id}  {paused}, overlap {live.overlap.value}, catch-up window "
                  f"{seconds_text(live.catchup_window_seconds)}{jitter}", highlight=False)
        out.print(f"  next: {', '.join(d.isoformat() for d in live.next_fires) or 'none'}", highlight=False)
        if live.recent_actions:
            out.print("  last fires: " + ", ".join(f"{a.scheduled_at.isoformat()} ({a.workflow_id})"
                                                  for a in live.recent_actions[:3]), highlight=False)
    elif view.schedule_id:
        out.print(f"  schedule: {view.schedule_id} is missing", highlight=False)
    for line in view.edited:
        out.print(f"  edited in Temporal (kept): {line}", highlight=False)
    if view.drift:
        out.print("  [bold red]drifted[/]: the Schedule's action was changed outside JobForge and its fires cannot "
                  "work:", highlight=False)
        for line in view.drift:
            out.print(f"    {line}", highlight=False)
    if view.fix:
        out.print(f"  fix: {view.fix}", highlight=False)


@triggers_app.command("create")
@command
def triggers_create(
    tenant: str = typer.Option(..., "--tenant", "-t"),
    name: str = typer.Option(..., "--name"),
    template: str = typer.Option(..., "--template"),
    cron: str | None = typer.Option(None, "--cron", help="Cron expression (a Temporal Schedule)."),
    every: float | None = typer.Option(None, "--every", help="Interval in seconds instead of a cron expression."),
    timezone: str = typer.Option("UTC", "--timezone"),
    event: str | None = typer.Option(None, "--event", help="Event type pattern, e.g. 'contract.*'."),
    inputs: str | None = typer.Option(None, "--inputs", help="Static inputs (JSON or @file)."),
    input_from: list[str] = typer.Option([], "--input-from", help="NAME=/json/pointer into the event (repeatable)."),
    cooldown: float = typer.Option(0, "--cooldown", min=0, help="Seconds between fires."),
    max_runs: int | None = typer.Option(None, "--max-runs", min=1),
    window: float = typer.Option(3600, "--window", min=1, help="Seconds of the max-runs window."),
    allow: list[str] = typer.Option([], "--allow", help="FIELD:PATTERN (template, event_type, source_app, actor)."),
    deny: list[str] = typer.Option([], "--deny", help="FIELD:PATTERN (template, event_type, source_app, actor)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Record what would fire instead of firing."),
    strict: bool = typer.Option(False, "--strict", help="Start from the strict safety config."),
    overlap: OverlapPolicy = typer.Option(OverlapPolicy.SKIP, "--overlap"),
    catchup_window: float = typer.Option(60, "--catchup-window", min=1),
    jitter: float = typer.Option(0, "--jitter", min=0),
    disabled: bool = typer.Option(False, "--disabled"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Create a cron trigger (a Temporal Schedule) or an event trigger."""
    if ((cron or every) and event) or not (cron or every or event):
        raise InvalidRequest("give --cron/--every for a cron trigger, or --event for an event trigger")
    pointers: dict[str, str] = {}
    for item in input_from:
        key, sep, pointer = item.partition("=")
        if not sep:
            raise InvalidRequest(f"--input-from {item!r}: use NAME=/json/pointer")
        pointers[key] = pointer
    base = strict_safety_config() if strict else SafetyConfig()
    safety = _typed(lambda: SafetyConfig(**{
        **base.model_dump(), "cooldown_seconds": cooldown or base.cooldown_seconds,
        "max_runs": max_runs or base.max_runs, "window_seconds": window if max_runs else base.window_seconds,
        "allow": tuple(allow), "deny": tuple(deny), "dry_run": dry_run or base.dry_run}))
    spec = _typed(lambda: TriggerSpec(
        tenant_id=tenant, name=name, kind=TriggerKind.EVENT if event else TriggerKind.CRON, template_key=template,
        inputs=parse_inputs(inputs), input_pointers=pointers, cron=cron, interval_seconds=every, timezone=timezone,
        event_pattern=event, enabled=not disabled, safety=safety, overlap=overlap,
        catchup_window_seconds=catchup_window, jitter_seconds=jitter, actor=f"trigger:{name}"))

    async def go() -> TriggerView:
        async with open_runtime(settings(), stack_flags=True, tenant=tenant) as rt:
            return await _service(rt).create(spec)

    view = run_async(go())
    print_json(view) if as_json else _print_view(view)


@triggers_app.command("list")
@command
def triggers_list(tenant: str = typer.Option(..., "--tenant", "-t"),
                  as_json: bool = typer.Option(False, "--json")) -> None:
    """A tenant's triggers with their live state (a Schedule paused in Temporal shows as paused)."""

    async def go() -> Any:
        async with open_runtime(settings(), stack_flags=True, tenant=tenant) as rt:
            return await _service(rt).list(tenant)

    views = run_async(go())
    if as_json:
        print_json([v.model_dump(mode="json") for v in views])
        return
    table = Table("name", "kind", "state", "when", "template", "dry-run", "fires")
    for v in views:
        t = v.trigger
        when = t.event_pattern or (f"{v.live.spec} ({v.live.timezone})" if v.live else
                                   t.cron or f"every {t.interval_seconds:g}s")
        state = v.state + (" (strict)" if v.strict else "")
        table.add_row(t.name, t.kind.value, state, when, t.template_key, str(t.safety.dry_run), str(v.recent_fires))
    print_table(table)
    for v in views:
        if v.drift:
            out.print(f"{v.trigger.name}: drifted ({'; '.join(v.drift)}); fix: {v.fix}", highlight=False)
        elif v.fix:
            out.print(f"{v.trigger.name}: its Temporal Schedule is missing; fix: {v.fix}", highlight=False)
        if v.skips:
            out.print(f"{v.trigger.name}: {v.skips}", highlight=False)


def _one(verb: str) -> Any:
    @command
    def run(name: str = typer.Argument(...), tenant: str = typer.Option(..., "--tenant", "-t"),
            as_json: bool = typer.Option(False, "--json")) -> None:
        async def go() -> Any:
            async with open_runtime(settings(), stack_flags=True, tenant=tenant) as rt:
                service = _service(rt)
                if verb == "fire":
                    return await service.fire(tenant, name)
                if verb == "delete":
                    return await service.delete(tenant, name)
                view = await getattr(service, verb)(tenant, name)
                if view.state == "schedule_missing":
                    raise ScheduleMissing(name, tenant, view.schedule_id or "")
                return view

        result = run_async(go())
        if as_json:
            print_json(result)
        elif isinstance(result, TriggerView):
            _print_view(result)
        elif verb == "fire":
            out.print(f"{result.verdict.value}: {'; '.join(result.reasons)}"
                      + (f" → run {result.run_workflow_id}" if result.run_workflow_id else "")
                      + (f" (start failed: {result.start_error})" if result.start_error else ""), highlight=False)
        else:
            out.print(f"trigger {name} deleted", highlight=False)

    run.__doc__ = {"show": "One trigger with its live state.", "pause": "Pause a trigger (and its Schedule).",
                   "resume": "Resume a trigger (and its Schedule).",
                   "fire": "Fire now, through the safety gate like a scheduled fire.",
                   "delete": "Delete a trigger and its Schedule."}[verb]
    return run


for _verb in ("show", "pause", "resume", "fire", "delete"):
    triggers_app.command(_verb)(_one(_verb))


@triggers_app.command("repair")
@command
def triggers_repair(name: str = typer.Argument(...), tenant: str = typer.Option(..., "--tenant", "-t"),
                    as_json: bool = typer.Option(False, "--json")) -> None:
    """Put a cron trigger's Temporal Schedule right: recreate it if deleted, else restore its action (input,
    workflow type, task queue, id, search attributes) and catch-up window, keeping the times, time zone,
    jitter, pause and overlap policy edited in Temporal."""

    async def go() -> tuple[TriggerView, Sequence[str]]:
        async with open_runtime(settings(), stack_flags=True, tenant=tenant) as rt:
            return await _service(rt).repair(tenant, name)

    view, done = run_async(go())
    if as_json:
        print_json({"view": view.model_dump(mode="json"), "done": list(done)})
        return
    for line in done:
        out.print(line, highlight=False)
    _print_view(view)


@triggers_app.command("update")
@command
def triggers_update(
    name: str = typer.Argument(...),
    tenant: str = typer.Option(..., "--tenant", "-t"),
    cron: str | None = typer.Option(None, "--cron", help="New cron expression (replaces the Schedule's times)."),
    every: float | None = typer.Option(None, "--every", help="New interval in seconds (replaces the times)."),
    timezone: str | None = typer.Option(None, "--timezone"),
    jitter: float | None = typer.Option(None, "--jitter", min=0),
    overlap: OverlapPolicy | None = typer.Option(None, "--overlap"),
    catchup_window: float | None = typer.Option(None, "--catchup-window", min=1),
    inputs: str | None = typer.Option(None, "--inputs", help="Static inputs (JSON or @file); replaces them."),
    strict: bool | None = typer.Option(None, "--strict/--no-strict",
                                       help="--strict: the strict safety config; --no-strict: relax to the "
                                            "default one (dry run off, no cooldown, no max runs, no allow list "
                                            "required). Allow and deny lists are kept unless given."),
    dry_run: bool | None = typer.Option(None, "--dry-run/--no-dry-run"),
    cooldown: float | None = typer.Option(None, "--cooldown", min=0),
    max_runs: int | None = typer.Option(None, "--max-runs", min=0, help="0 removes the limit."),
    window: float | None = typer.Option(None, "--window", min=1),
    allow: list[str] = typer.Option([], "--allow", help="FIELD:PATTERN (repeatable); replaces the allow list."),
    deny: list[str] = typer.Option([], "--deny", help="FIELD:PATTERN (repeatable); replaces the deny list."),
    clear_allow: bool = typer.Option(False, "--clear-allow", help="Empty the allow list."),
    clear_deny: bool = typer.Option(False, "--clear-deny", help="Empty the deny list."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Change a trigger through JobForge (a cron trigger's Schedule too, whose action it also repairs); what
    is not given keeps its current value (for a cron trigger: the Schedule's live one)."""
    changes = _typed(lambda: TriggerChanges(
        cron=cron, interval_seconds=every, timezone=timezone, jitter_seconds=jitter, overlap=overlap,
        catchup_window_seconds=catchup_window, inputs=parse_inputs(inputs) if inputs is not None else None,
        strict=strict, dry_run=dry_run, cooldown_seconds=cooldown, max_runs=max_runs, window_seconds=window,
        allow=() if clear_allow else (tuple(allow) or None), deny=() if clear_deny else (tuple(deny) or None)))
    if not changes.model_dump(exclude_none=True):
        raise InvalidRequest("nothing to change: give at least one option (see --help)")

    async def go() -> TriggerView:
        async with open_runtime(settings(), stack_flags=True, tenant=tenant) as rt:
            return await _service(rt).update(tenant, name, changes)

    view = run_async(go())
    print_json(view) if as_json else _print_view(view)


@triggers_app.command("dry-runs")
@command
def triggers_dry_runs(tenant: str = typer.Option(..., "--tenant", "-t"),
                      trigger: str | None = typer.Option(None, "--trigger"),
                      all_fires: bool = typer.Option(False, "--all", help="Every decision, not only dry runs."),
                      limit: int = typer.Option(100, min=1, max=1000),
                      as_json: bool = typer.Option(False, "--json")) -> None:
    """What dry-run triggers would have fired (or, with --all, every gate decision)."""

    async def go() -> Any:
        async with open_runtime(settings(), stack_flags=True, tenant=tenant) as rt:
            service = _service(rt)
            if all_fires:
                return await service.fires(tenant, trigger, limit)
            return await service.dry_runs(tenant, trigger, limit)

    records = run_async(go())
    if as_json:
        print_json([r.model_dump(mode="json") for r in records])
        return
    table = Table("at", "trigger", "source", "verdict", "reasons", "inputs")
    for r in records:
        table.add_row(r.fired_at.isoformat(timespec="seconds"), r.trigger_name, r.source, r.verdict.value,
                      "; ".join(r.reasons), str(r.inputs)[:80])
    print_table(table)
