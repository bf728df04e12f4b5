"""Cron triggers' Schedules as pure data: spec text, drift, valid edits, what a repair adopts, update changes,
strict triggers that can never fire, and the fire workflow's own reading of its input."""

from __future__ import annotations

import contextlib
import dataclasses
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from temporalio.client import (
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleCalendarSpec,
    ScheduleIntervalSpec,
    ScheduleRange,
    ScheduleSpec,
)
from temporalio.common import TypedSearchAttributes
from temporalio.contrib.pydantic import pydantic_data_converter

from jobforge.errors import InvalidRequest, TriggerInputInvalid
from jobforge.models import OverlapPolicy, SafetyConfig, Trigger, TriggerKind, strict_safety_config
from shared.triggers.models import read_fire_input
from shared.triggers.schedules import (
    LiveSchedule,
    adopt,
    build_schedule,
    repaired,
    schedule_drift,
    schedule_edits,
    spec_text,
    trigger_of_fire_id,
)
from shared.triggers.service import TriggerChanges, apply_changes, check_safety, static_skip

T0 = datetime(2026, 1, 1, tzinfo=UTC)
HC = "autopilot.jobforge.healthcheck"
CONVERTER = pydantic_data_converter.payload_converter


def trigger(**kw: Any) -> Trigger:
    base: dict[str, Any] = {"tenant_id": "acme", "name": "nightly", "kind": TriggerKind.CRON, "cron": "0 3 * * *",
                            "template_key": HC, "trigger_id": "t1", "created_at": T0, "updated_at": T0,
                            "timezone": "Europe/Berlin", "catchup_window_seconds": 120}
    return Trigger(**{**base, **kw})


def every_day_at(hour: int, minute: int = 0) -> ScheduleCalendarSpec:
    """A calendar as Temporal describes a compiled ``M H * * *``."""
    return ScheduleCalendarSpec(second=(ScheduleRange(0),), minute=(ScheduleRange(minute),),
                                hour=(ScheduleRange(hour),), day_of_month=(ScheduleRange(1, 31),),
                                month=(ScheduleRange(1, 12),), day_of_week=(ScheduleRange(0, 6),))


def described(t: Trigger, task_queue: str = "jobforge") -> Schedule:
    """JobForge's Schedule as a describe answers it: the input as a payload, the cron compiled to a calendar."""
    schedule = build_schedule(t, task_queue)
    assert isinstance(schedule.action, ScheduleActionStartWorkflow)
    action = dataclasses.replace(schedule.action, args=CONVERTER.to_payloads(schedule.action.args))
    spec = dataclasses.replace(schedule.spec, cron_expressions=[], calendars=[every_day_at(3)])
    return dataclasses.replace(schedule, action=action, spec=spec)


def stock_update(live: Schedule, **spec: Any) -> Schedule:
    """What `temporal schedule update --cron ... --workflow-id ... --task-queue ... --type ...` leaves."""
    assert isinstance(live.action, ScheduleActionStartWorkflow)
    action = dataclasses.replace(live.action, args=[], typed_search_attributes=TypedSearchAttributes.empty)
    return dataclasses.replace(
        live, action=action, spec=dataclasses.replace(live.spec, time_zone_name="", jitter=None, **spec),
        policy=dataclasses.replace(live.policy, catchup_window=timedelta(days=365)),
        state=dataclasses.replace(live.state, paused=False, note=None))


def test_spec_text_reads_compiled_calendars_back_as_cron() -> None:
    """A compiled daily calendar reads as its cron text; steps, lists, seconds, intervals and several specs
    read as what they mean; only a lone 5-field calendar or a lone interval counts as one cron/interval."""
    assert spec_text(ScheduleSpec(calendars=[every_day_at(3)])) == ("0 3 * * *", "0 3 * * *", None)
    weekdays = dataclasses.replace(every_day_at(5, 30), day_of_week=(ScheduleRange(1, 5),),
                                   hour=(ScheduleRange(0, 23, 6),))
    assert spec_text(ScheduleSpec(calendars=[weekdays]))[:2] == ("30 */6 * * 1-5", "30 */6 * * 1-5")
    listed = dataclasses.replace(every_day_at(3), minute=(ScheduleRange(0), ScheduleRange(30)))
    assert spec_text(ScheduleSpec(calendars=[listed]))[1] == "0,30 3 * * *"
    seconds = dataclasses.replace(every_day_at(3), second=(ScheduleRange(15),))
    assert spec_text(ScheduleSpec(calendars=[seconds])) == ("15 0 3 * * *", None, None)
    assert spec_text(ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(minutes=90))])) == \
        ("every 5400s", None, 5400.0)
    both = ScheduleSpec(calendars=[every_day_at(3)], intervals=[ScheduleIntervalSpec(every=timedelta(hours=1))])
    assert spec_text(both) == ("0 3 * * * | every 3600s", None, None)
    assert spec_text(ScheduleSpec()) == ("no times", None, None)
    bare = ScheduleCalendarSpec(second=(), minute=(), hour=(ScheduleRange(17),), day_of_month=(), month=(),
                                day_of_week=(ScheduleRange(5),))
    assert spec_text(ScheduleSpec(calendars=[bare]))[1] == "0 17 * * 5"  # empty fields mean Temporal's defaults


def test_jobforges_own_schedule_has_no_drift_and_no_edits() -> None:
    """The Schedule JobForge wrote, as Temporal describes it, differs in nothing."""
    t = trigger(schedule_spec="0 3 * * *")
    live = described(t)
    assert schedule_drift(t, live, "jobforge", CONVERTER) == []
    assert schedule_edits(t, LiveSchedule(spec="0 3 * * *", timezone="Europe/Berlin", catchup_window_seconds=120)) == []


def test_a_stock_update_is_drift_in_the_action_and_valid_edits_elsewhere() -> None:
    """A stock update loses the input, the search attributes and the catch-up window (drift, named each) and
    resets times, time zone and jitter (edits JobForge keeps)."""
    t = trigger(schedule_spec="0 3 * * *", jitter_seconds=5)
    after = stock_update(described(t), calendars=[every_day_at(4)])
    drift = schedule_drift(t, after, "jobforge", CONVERTER)
    assert drift[0].startswith("input: missing")
    assert {d.split(":")[0] for d in drift[1:]} == {
        "search attribute JobForgeTenant", "search attribute JobForgeTemplate", "search attribute JobForgeTrace",
        "catch-up window"}
    assert "catch-up window: 31536000s, Temporal's default when an update names none (JobForge's: 120s)" in drift
    live = LiveSchedule(spec="0 4 * * *", cron="0 4 * * *", timezone="UTC", jitter_seconds=0, paused=False)
    assert schedule_edits(t, live) == ["times: 0 4 * * * (JobForge had 0 3 * * *)",
                                       "time zone: UTC (JobForge had Europe/Berlin)", "jitter: 0s (JobForge had 5s)"]
    adopted = adopt(t, live)
    assert (adopted["cron"], adopted["timezone"], adopted["jitter_seconds"]) == ("0 4 * * *", "UTC", 0)
    assert "cron" not in adopt(t, live, keep_times=True)


def test_other_action_changes_are_named() -> None:
    """Another workflow type, task queue, id, an input for another trigger, extra arguments or an input that
    is not a trigger fire input each show as drift."""
    t = trigger()
    live = described(t)
    assert isinstance(live.action, ScheduleActionStartWorkflow)
    other = build_schedule(trigger(trigger_id="t2", name="other"), "jobforge").action
    assert isinstance(other, ScheduleActionStartWorkflow)
    cases = {
        "workflow type": dataclasses.replace(live.action, workflow="autopilot.jobforge.healthcheck"),
        "task queue": dataclasses.replace(live.action, task_queue="elsewhere"),
        "workflow id": dataclasses.replace(live.action, id="mine"),
        "input: trigger_id 't2'": dataclasses.replace(live.action, args=CONVERTER.to_payloads(other.args)),
        "input: 2 arguments": dataclasses.replace(live.action, args=[*live.action.args, *live.action.args]),
        "input: not a trigger fire input": dataclasses.replace(live.action, args=CONVERTER.to_payloads([{"x": 1}])),
    }
    for expected, action in cases.items():
        drift = schedule_drift(t, dataclasses.replace(live, action=action), "jobforge", CONVERTER)
        assert drift and drift[0].startswith(expected), (expected, drift)


def test_repair_restores_the_action_and_window_and_keeps_the_rest() -> None:
    """A repaired Schedule has JobForge's action and catch-up window and the live spec, state and overlap."""
    t = trigger()
    broken = stock_update(described(t), calendars=[every_day_at(4)])
    broken = dataclasses.replace(broken, state=dataclasses.replace(broken.state, paused=True, note="ops"))
    fixed = repaired(t, broken, "jobforge")
    assert fixed.spec == broken.spec and fixed.state == broken.state and fixed.policy.overlap == broken.policy.overlap
    assert fixed.policy.catchup_window == timedelta(seconds=120)
    assert isinstance(fixed.action, ScheduleActionStartWorkflow)
    described_fixed = dataclasses.replace(fixed, action=dataclasses.replace(
        fixed.action, args=CONVERTER.to_payloads(fixed.action.args)))
    assert schedule_drift(t, described_fixed, "jobforge", CONVERTER) == []


def test_fire_input_is_read_or_refused_typed() -> None:
    """The fire workflow's input: one TriggerFireInput, else trigger_input_invalid naming what is wrong and
    the repair command."""
    good = {"tenant_id": "acme", "trigger_id": "t1", "trigger_name": "nightly"}
    assert read_fire_input([good]).trigger_name == "nightly"
    for args, says in (([], "got no argument"), ([good, good], "got 2 arguments"),
                       ([{"tenant_id": "acme"}], "trigger_id: Field required"), ([None], "invalid TriggerFireInput")):
        with pytest.raises(TriggerInputInvalid) as info:
            read_fire_input(args)
        assert says in info.value.message and "jobforge triggers repair" in info.value.message


@given(st.lists(st.one_of(st.none(), st.integers(), st.text(max_size=20),
                          st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=4)), max_size=3))
def test_any_other_input_is_refused_never_raised_otherwise(args: list[Any]) -> None:
    """Whatever a stock update passes as arguments, reading them answers the input or trigger_input_invalid."""
    with contextlib.suppress(TriggerInputInvalid):
        read_fire_input(args)


def test_fire_ids_name_their_trigger() -> None:
    """A scheduled fire's workflow id names its tenant and trigger; other ids name none."""
    assert trigger_of_fire_id("jobforge/acme/trigger/nightly/fire-2026-01-01T03:00:00Z") == ("acme", "nightly")
    assert trigger_of_fire_id("jobforge/acme/trigger/nightly/manual/abc") is None
    assert trigger_of_fire_id("somebody/else") is None


def test_strict_without_an_allow_list_is_refused_and_explained() -> None:
    """A strict config with no allow list is refused at create/update; a stored one says every fire is skipped
    and how to fix it; a cron trigger whose lists can never pass its scheduled fires says so too."""
    with pytest.raises(InvalidRequest, match=re.escape(f"--allow template:{HC}")):
        check_safety(strict_safety_config(), HC)
    check_safety(strict_safety_config().model_copy(update={"allow": (f"template:{HC}",)}), HC)
    stored = trigger(safety=strict_safety_config())
    assert "strict triggers need an allow list" in static_skip(stored) and "--no-strict" in static_skip(stored)
    assert static_skip(trigger(safety=SafetyConfig(allow=(f"template:{HC}",), allow_required=True))) == ""
    events_only = trigger(safety=SafetyConfig(allow=("source_app:settler",)))
    assert "every scheduled fire is skipped: no allow-list entry matches" in static_skip(events_only)
    assert "denied by template:autopilot.*" in static_skip(trigger(safety=SafetyConfig(deny=("template:autopilot.*",))))
    assert static_skip(trigger()) == ""
    event = {"kind": TriggerKind.EVENT, "cron": None, "event_pattern": "contract.*"}
    assert "denied by template:autopilot.*" in static_skip(trigger(**event, safety=SafetyConfig(
        deny=("template:autopilot.*",))))
    assert "no allow-list entry matches its template" in static_skip(trigger(**event, safety=SafetyConfig(
        allow=("template:other.*",))))
    assert static_skip(trigger(**event, safety=SafetyConfig(allow=("template:other.*", "source_app:settler")))) == ""
    assert static_skip(trigger(**event, safety=SafetyConfig(deny=("source_app:x",)))) == ""


def test_update_changes_apply_as_a_whole() -> None:
    """--no-strict relaxes to the default config keeping the lists; --strict tightens; a cron replaces an
    interval; schedule options on an event trigger and cron with an interval are refused."""
    strict = trigger(safety=strict_safety_config().model_copy(update={"allow": (f"template:{HC}",)}))
    relaxed = apply_changes(strict, TriggerChanges(strict=False))
    assert relaxed.safety == SafetyConfig(allow=(f"template:{HC}",)) and not relaxed.strict
    again = apply_changes(relaxed, TriggerChanges(strict=True, cooldown_seconds=60, max_runs=0))
    assert again.strict and again.safety.dry_run and again.safety.cooldown_seconds == 60
    assert again.safety.max_runs is None
    moved = apply_changes(trigger(cron=None, interval_seconds=60), TriggerChanges(cron="0 5 * * *",
                                                                                  overlap=OverlapPolicy.BUFFER_ONE))
    assert (moved.cron, moved.interval_seconds, moved.overlap) == ("0 5 * * *", None, OverlapPolicy.BUFFER_ONE)
    event = trigger(kind=TriggerKind.EVENT, cron=None, event_pattern="contract.*")
    with pytest.raises(InvalidRequest, match="only cron triggers"):
        apply_changes(event, TriggerChanges(timezone="UTC"))
    with pytest.raises(InvalidRequest, match="not both"):
        apply_changes(trigger(), TriggerChanges(cron="0 5 * * *", interval_seconds=5))
    with pytest.raises(InvalidRequest, match="allow"):
        apply_changes(trigger(), TriggerChanges(allow=("nonsense",)))
