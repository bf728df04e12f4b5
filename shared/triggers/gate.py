"""The safety gate every trigger fire passes (pure: the clock and the state are arguments)."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from datetime import datetime

from jobforge.models import Trigger, Verdict
from shared.triggers.models import Decision, FireContext, TriggerState


def type_matches(pattern: str, event_type: str) -> bool:
    """Whether ``event_type`` matches ``pattern``: ``*`` matches one dot-separated segment, a trailing
    ``.*`` also matches deeper ones (``contract.*`` matches ``contract.signed`` and ``contract.a.b``)."""
    p_parts, e_parts = pattern.split("."), event_type.split(".")
    if p_parts and p_parts[-1] == "*" and len(e_parts) >= len(p_parts):
        e_parts = [*e_parts[: len(p_parts) - 1], ".".join(e_parts[len(p_parts) - 1:])]
    if len(p_parts) != len(e_parts):
        return False
    return all(fnmatch.fnmatchcase(e, p) for p, e in zip(p_parts, e_parts, strict=True))


def _subject(trigger: Trigger, ctx: FireContext) -> dict[str, str | None]:
    return {"template": trigger.template_key, "event_type": ctx.event_type, "source_app": ctx.source_app,
            "actor": ctx.actor}


def _matching(entries: Iterable[str], subject: dict[str, str | None]) -> list[str]:
    hits = []
    for entry in entries:
        field, _, pattern = entry.partition(":")
        value = subject.get(field)
        if value is not None and fnmatch.fnmatchcase(value, pattern):
            hits.append(entry)
    return hits


def evaluate_trigger_fire(trigger: Trigger, state: TriggerState, now: datetime, ctx: FireContext,
                          *, triggers_enabled: bool) -> Decision:
    """Fire, skip or dry-run, with the reasons; checks in order: global flag, enabled, deny lists,
    allow lists, cooldown, max runs per window, dry-run mode."""
    safety = trigger.safety
    if not triggers_enabled:
        return Decision(verdict=Verdict.SKIP, reasons=["JOBFORGE_TRIGGERS_ENABLED is off"])
    if not trigger.enabled or trigger.paused:
        reason = "trigger is paused" if trigger.paused else "trigger is disabled"
        return Decision(verdict=Verdict.SKIP, reasons=[reason])
    subject = _subject(trigger, ctx)
    denied = _matching(safety.deny, subject)
    if denied:
        return Decision(verdict=Verdict.SKIP, reasons=[f"denied by {entry}" for entry in denied])
    if safety.allow or safety.allow_required:
        allowed = _matching(safety.allow, subject)
        if not allowed:
            return Decision(verdict=Verdict.SKIP,
                            reasons=["no allow-list entry matches" if safety.allow else "an allow list is required"])
    if safety.cooldown_seconds and state.last_fired_at is not None:
        elapsed = (now - state.last_fired_at).total_seconds()
        if elapsed < safety.cooldown_seconds:
            wait = safety.cooldown_seconds - elapsed
            return Decision(verdict=Verdict.SKIP, retry_after=wait,
                            reasons=[f"cooldown: last fire {elapsed:.1f}s ago, cooldown {safety.cooldown_seconds:g}s"])
    if safety.max_runs is not None and state.fires_in_window >= safety.max_runs:
        return Decision(verdict=Verdict.SKIP,
                        reasons=[f"max runs: {state.fires_in_window} of {safety.max_runs} in the last "
                                 f"{safety.window_seconds:g}s"])
    if safety.dry_run:
        return Decision(verdict=Verdict.DRY_RUN, reasons=["dry-run mode: recorded, not fired"])
    return Decision(verdict=Verdict.FIRE, reasons=["all checks passed"])
