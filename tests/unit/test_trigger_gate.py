"""The trigger safety gate, event type patterns and trigger input mapping (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from jobforge.errors import InvalidInputs
from jobforge.models import (
    FireOutcome,
    RouteEventResult,
    SafetyConfig,
    Trigger,
    TriggerKind,
    TriggerSpec,
    Verdict,
    strict_safety_config,
)
from shared.triggers.gate import evaluate_trigger_fire, type_matches
from shared.triggers.inputs import build_inputs, resolve_pointer
from shared.triggers.models import FireContext, StoredEvent, TriggerState

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
EVENT = FireContext(source="event", event_type="contract.signed", source_app="settler", actor="alice")


def trigger(**safety: Any) -> Trigger:
    return Trigger(tenant_id="acme", name="t1", kind=TriggerKind.EVENT, template_key="autopilot.x.y",
                   event_pattern="contract.*", safety=SafetyConfig(**safety), trigger_id="id",
                   created_at=NOW, updated_at=NOW)


def decide(t: Trigger, state: TriggerState | None = None, ctx: FireContext = EVENT, on: bool = True) -> Any:
    return evaluate_trigger_fire(t, state or TriggerState(), NOW, ctx, triggers_enabled=on)


def test_fires_when_every_check_passes() -> None:
    """A plain enabled trigger with no limits fires."""
    assert decide(trigger()).verdict is Verdict.FIRE


def test_order_of_checks() -> None:
    """Flag, enabled, deny, allow, cooldown, max runs, dry-run — the first failing check gives the reason."""
    t = trigger(deny=("source_app:settler",), dry_run=True, cooldown_seconds=60)
    assert decide(t, on=False).reasons == ["JOBFORGE_TRIGGERS_ENABLED is off"]
    assert decide(t.model_copy(update={"enabled": False})).reasons == ["trigger is disabled"]
    assert decide(t.model_copy(update={"paused": True})).reasons == ["trigger is paused"]
    assert decide(t).reasons == ["denied by source_app:settler"]
    allow = trigger(allow=("event_type:invoice.*",))
    assert decide(allow).reasons == ["no allow-list entry matches"]
    assert decide(trigger(allow_required=True)).reasons == ["an allow list is required"]
    assert decide(trigger(allow=("event_type:contract.*", "actor:bob"))).verdict is Verdict.FIRE


def test_cooldown_and_max_runs() -> None:
    """A fire inside the cooldown or beyond max runs per window is skipped with when to retry."""
    held = decide(trigger(cooldown_seconds=60), TriggerState(last_fired_at=NOW - timedelta(seconds=20)))
    assert held.verdict is Verdict.SKIP and held.retry_after == pytest.approx(40)
    assert decide(trigger(cooldown_seconds=60), TriggerState(last_fired_at=NOW - timedelta(seconds=61))).verdict \
        is Verdict.FIRE
    assert decide(trigger(max_runs=2), TriggerState(fires_in_window=2)).reasons[0].startswith("max runs: 2 of 2")
    assert decide(trigger(max_runs=2), TriggerState(fires_in_window=1)).verdict is Verdict.FIRE


def test_dry_run_and_strict_default() -> None:
    """Dry-run mode records instead of firing; the strict default refuses without an allow list."""
    assert decide(trigger(dry_run=True)).verdict is Verdict.DRY_RUN
    strict = strict_safety_config()
    assert strict.dry_run and strict.cooldown_seconds == 3600 and strict.max_runs == 1 and strict.allow_required
    t = trigger().model_copy(update={"safety": strict})
    assert decide(t).verdict is Verdict.SKIP
    allowed = t.model_copy(update={"safety": strict.model_copy(update={"allow": ("template:autopilot.*",)})})
    assert decide(allowed).verdict is Verdict.DRY_RUN


@pytest.mark.parametrize(("pattern", "event_type", "match"), [
    ("contract.*", "contract.signed", True), ("contract.*", "contract.a.b", True),
    ("contract.*", "contracts.signed", False), ("contract.signed", "contract.signed", True),
    ("*.completed", "agent.completed", True), ("*.completed", "agent.execution.completed", False),
    ("agent.*.completed", "agent.execution.completed", True), ("contract.*", "contract", False),
])
def test_type_patterns(pattern: str, event_type: str, match: bool) -> None:
    """``*`` matches one segment; a trailing ``.*`` matches any depth below its prefix."""
    assert type_matches(pattern, event_type) is match


@given(st.lists(st.from_regex(r"[a-z]{1,6}", fullmatch=True), min_size=1, max_size=4))
def test_exact_and_prefix_patterns_always_match(segments: list[str]) -> None:
    """An event type matches itself and every ``prefix.*`` above it."""
    event_type = ".".join(segments)
    assert type_matches(event_type, event_type)
    for i in range(1, len(segments)):
        assert type_matches(".".join(segments[:i]) + ".*", event_type)


def test_inputs_from_json_pointers() -> None:
    """Static inputs are overlaid with event values by JSON pointer; a missing value is a typed error."""
    event = {"payload": {"contract": {"id": "c-1", "parties": ["a", "b"]}, "a/b": 1}}
    assert build_inputs({"x": 1}, {"id": "/payload/contract/id", "second": "/payload/contract/parties/1",
                                   "esc": "/payload/a~1b"}, event) == {"x": 1, "id": "c-1", "second": "b", "esc": 1}
    assert resolve_pointer(event, "") == event
    with pytest.raises(InvalidInputs, match="/payload/nope"):
        build_inputs({}, {"n": "/payload/nope"}, event)
    with pytest.raises(InvalidInputs):
        build_inputs({}, {"n": "/payload"}, None)


def test_spec_validation() -> None:
    """Cron triggers need one schedule and no pattern; event triggers need a pattern; bad entries are refused."""
    with pytest.raises(ValidationError, match="exactly one"):
        TriggerSpec(tenant_id="a", name="n", kind=TriggerKind.CRON, template_key="a.b.c")
    with pytest.raises(ValidationError, match="event pattern"):
        TriggerSpec(tenant_id="a", name="n", kind=TriggerKind.EVENT, template_key="a.b.c")
    with pytest.raises(ValidationError, match="FIELD:PATTERN"):
        SafetyConfig(allow=("colour:red",))
    with pytest.raises(ValidationError, match="JSON pointer"):
        TriggerSpec(tenant_id="a", name="n", kind=TriggerKind.EVENT, template_key="a.b.c", event_pattern="x.*",
                    input_pointers={"a": "payload/x"})
    TriggerSpec(tenant_id="a", name="n", kind=TriggerKind.CRON, template_key="a.b.c", interval_seconds=1)


def test_events_list_says_how_each_event_was_routed() -> None:
    """`jobforge events list`: pending, routed to nothing, or each fire's trigger and verdict."""
    from workers.cli_triggers import _routing

    now = datetime.now(UTC)
    base = StoredEvent(id=1, tenant_id="acme", event_id="e", event_type="order.paid", trace_id="t", source_app="",
                       source_module="", payload={}, occurred_at=None, route_workflow_id="k", received_at=now)
    assert _routing(base) == "pending"
    assert _routing(base.model_copy(update={"routed_at": now})) == "yes"  # routed before results were kept
    nothing = RouteEventResult(event_row_id=1, matched=0, fires=[])
    assert _routing(base.model_copy(update={"routed_at": now, "routing": nothing})) == "no trigger matched"
    fires = [FireOutcome(trigger_name="a", verdict=Verdict.FIRE, reasons=[], fire_id=1),
             FireOutcome(trigger_name="b", verdict=Verdict.DRY_RUN, reasons=[], fire_id=2)]
    routed = RouteEventResult(event_row_id=1, matched=2, fires=fires)
    assert _routing(base.model_copy(update={"routed_at": now, "routing": routed})) == "a: fire, b: dry_run"
