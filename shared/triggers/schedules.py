"""Temporal Schedules of cron triggers (pure): ids, the Schedule JobForge builds, the live Schedule as
JobForge shows it, and how a live Schedule differs from JobForge's (drift it repairs, edits it keeps)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from temporalio.api.common.v1 import Payload
from temporalio.client import (
    Schedule,
    ScheduleActionExecutionStartWorkflow,
    ScheduleActionStartWorkflow,
    ScheduleCalendarSpec,
    ScheduleDescription,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleState,
)
from temporalio.converter import PayloadConverter

from jobforge.models import OverlapPolicy, Trigger
from shared.triggers.models import TriggerFireInput

TRIGGER_FIRE_WORKFLOW = "jobforge.trigger.fire"
EVENT_ROUTER_WORKFLOW = "jobforge.event.router"
#: the catch-up window Temporal gives a Schedule whose update names none (what the stock CLI sends)
TEMPORAL_DEFAULT_CATCHUP = timedelta(days=365)

_OVERLAP = {
    OverlapPolicy.SKIP: ScheduleOverlapPolicy.SKIP, OverlapPolicy.BUFFER_ONE: ScheduleOverlapPolicy.BUFFER_ONE,
    OverlapPolicy.BUFFER_ALL: ScheduleOverlapPolicy.BUFFER_ALL,
    OverlapPolicy.CANCEL_OTHER: ScheduleOverlapPolicy.CANCEL_OTHER,
    OverlapPolicy.TERMINATE_OTHER: ScheduleOverlapPolicy.TERMINATE_OTHER,
    OverlapPolicy.ALLOW_ALL: ScheduleOverlapPolicy.ALLOW_ALL,
}
_OVERLAP_BACK = {v: k for k, v in _OVERLAP.items()}


def schedule_id(tenant_id: str, name: str) -> str:
    return f"jobforge/{tenant_id}/trigger/{name}"


def fire_workflow_id(tenant_id: str, name: str) -> str:
    """The id prefix of a trigger's fire workflows (Temporal appends the scheduled time)."""
    return f"jobforge/{tenant_id}/trigger/{name}/fire"


def trigger_of_fire_id(workflow_id: str) -> tuple[str, str] | None:
    """(tenant, trigger name) of a scheduled fire's workflow id (``<prefix>-<scheduled time>``), else None."""
    parts = workflow_id.split("/")
    if len(parts) != 5 or parts[0] != "jobforge" or parts[2] != "trigger" or not parts[4].startswith("fire"):
        return None
    return parts[1], parts[3]


# -- what JobForge writes ----------------------------------------------------------------------------


def build_spec(trigger: Trigger) -> ScheduleSpec:
    return ScheduleSpec(
        cron_expressions=[trigger.cron] if trigger.cron else [],
        intervals=[ScheduleIntervalSpec(every=timedelta(seconds=trigger.interval_seconds))]
        if trigger.interval_seconds else [],
        jitter=timedelta(seconds=trigger.jitter_seconds) if trigger.jitter_seconds else None,
        time_zone_name=trigger.timezone,
    )


def build_action(trigger: Trigger, task_queue: str) -> ScheduleActionStartWorkflow:
    """The one action a trigger's Schedule takes: start ``jobforge.trigger.fire`` for this trigger (built by
    the one builder of start options, search attributes included)."""
    from shared.starts import trigger_fire_start  # it imports this module's names

    return trigger_fire_start(trigger, source="schedule", actor=trigger.actor, task_queue=task_queue,
                              id=fire_workflow_id(trigger.tenant_id, trigger.name)).schedule_action()


def build_policy(trigger: Trigger, overlap: OverlapPolicy | None = None,
                 pause_on_failure: bool = False) -> SchedulePolicy:
    return SchedulePolicy(overlap=_OVERLAP[overlap or trigger.overlap],
                          catchup_window=timedelta(seconds=trigger.catchup_window_seconds),
                          pause_on_failure=pause_on_failure)


def schedule_note(trigger: Trigger) -> str:
    return f"JobForge trigger {trigger.name} → {trigger.template_key}"


def build_schedule(trigger: Trigger, task_queue: str) -> Schedule:
    return Schedule(action=build_action(trigger, task_queue), spec=build_spec(trigger), policy=build_policy(trigger),
                    state=ScheduleState(paused=not trigger.enabled, note=schedule_note(trigger)))


def repaired(trigger: Trigger, live: Schedule, task_queue: str) -> Schedule:
    """``live`` with JobForge's action and catch-up window back, keeping what may be edited in Temporal:
    the spec (times, time zone, jitter), the state (paused, note) and the overlap policy."""
    return Schedule(action=build_action(trigger, task_queue), spec=live.spec,
                    policy=dataclasses.replace(live.policy,
                                               catchup_window=timedelta(seconds=trigger.catchup_window_seconds)),
                    state=live.state)


# -- the live Schedule --------------------------------------------------------------------------------


class ScheduleActionTaken(BaseModel):
    """One action a Schedule took: the fire workflow it started."""

    model_config = ConfigDict(frozen=True)

    scheduled_at: datetime
    started_at: datetime
    workflow_id: str


class LiveSchedule(BaseModel):
    """A cron trigger's Temporal Schedule as Temporal has it now."""

    model_config = ConfigDict(frozen=True)

    #: the times, as a cron expression when the spec is one (``0 4 * * *``), else described
    spec: str
    #: the spec as one cron expression / one interval, when it is exactly that
    cron: str | None = None
    interval_seconds: float | None = None
    timezone: str = "UTC"
    jitter_seconds: float = 0
    paused: bool = False
    note: str = ""
    overlap: OverlapPolicy = OverlapPolicy.SKIP
    catchup_window_seconds: float = 0
    pause_on_failure: bool = False
    next_fires: list[datetime] = Field(default_factory=list)
    recent_actions: list[ScheduleActionTaken] = Field(default_factory=list)
    #: the action: workflow type, task queue, workflow id (empty when the action starts no workflow)
    workflow_type: str = ""
    task_queue: str = ""
    workflow_id: str = ""


#: a calendar's fields with their bounds and what an empty field means (Temporal's defaults)
_FIELDS = (("second", 0, 59, "0"), ("minute", 0, 59, "0"), ("hour", 0, 23, "0"), ("day_of_month", 1, 31, "*"),
           ("month", 1, 12, "*"), ("day_of_week", 0, 6, "*"))


def _range_text(r: ScheduleRange, low: int, high: int) -> str:
    end = max(r.end, r.start)
    step = f"/{r.step}" if r.step > 1 else ""
    if r.start == low and end == high:
        return f"*{step}"
    return f"{r.start}{step}" if r.start == end else f"{r.start}-{end}{step}"


def _field_text(ranges: Sequence[ScheduleRange], low: int, high: int, empty: str) -> str:
    return ",".join(_range_text(r, low, high) for r in ranges) if ranges else empty


def calendar_text(cal: ScheduleCalendarSpec) -> tuple[str, bool]:
    """A calendar spec as cron text, and whether that text is a plain 5-field cron expression."""
    fields = {name: _field_text(getattr(cal, name), low, high, empty) for name, low, high, empty in _FIELDS}
    year = ",".join(_range_text(r, -1, -1) for r in cal.year) if cal.year else "*"
    five = " ".join(fields[name] for name, *_ in _FIELDS[1:])
    if fields["second"] == "0" and year == "*" and not cal.comment:
        return five, True
    text = f"{fields['second']} {five}" + (f" {year}" if year != "*" else "")
    return text + (f" ({cal.comment})" if cal.comment else ""), False


def _seconds(td: timedelta | None) -> float:
    return td.total_seconds() if td else 0.0


def seconds_text(value: float) -> str:
    """``120s``, ``31536000s``, ``0.5s`` (never an exponent)."""
    return f"{int(value)}s" if float(value).is_integer() else f"{value}s"


def _interval_text(i: ScheduleIntervalSpec) -> str:
    offset = f" offset {seconds_text(_seconds(i.offset))}" if i.offset else ""
    return f"every {seconds_text(_seconds(i.every))}{offset}"


def spec_text(spec: ScheduleSpec) -> tuple[str, str | None, float | None]:
    """The times of ``spec`` in one line, and the spec as one cron expression or one interval when it is one."""
    parts: list[str] = []
    plain: list[str] = []
    for cal in spec.calendars:
        text, is_cron = calendar_text(cal)
        parts.append(text)
        plain.append(text if is_cron else "")
    parts.extend(spec.cron_expressions)  # only on a spec not yet sent to Temporal
    parts.extend(_interval_text(i) for i in spec.intervals)
    extra = [f"except {calendar_text(s)[0]}" for s in spec.skip]
    if spec.start_at:
        extra.append(f"from {spec.start_at.isoformat()}")
    if spec.end_at:
        extra.append(f"until {spec.end_at.isoformat()}")
    text = " | ".join(parts) or "no times"
    if extra:
        text += " (" + ", ".join(extra) + ")"
    bounded = bool(extra)
    cron = plain[0] if len(parts) == 1 and len(plain) == 1 and plain[0] and not bounded else None
    interval = None
    if len(parts) == 1 and len(spec.intervals) == 1 and not spec.intervals[0].offset and not bounded:
        interval = _seconds(spec.intervals[0].every)
    return text, cron, interval


def live_schedule(desc: ScheduleDescription, next_count: int = 3, recent_count: int = 5) -> LiveSchedule:
    s = desc.schedule
    text, cron, interval = spec_text(s.spec)
    action = s.action
    recent = [ScheduleActionTaken(scheduled_at=a.scheduled_at, started_at=a.started_at,
                                  workflow_id=a.action.workflow_id)
              for a in desc.info.recent_actions if isinstance(a.action, ScheduleActionExecutionStartWorkflow)]
    return LiveSchedule(
        spec=text, cron=cron, interval_seconds=interval, timezone=s.spec.time_zone_name or "UTC",
        jitter_seconds=_seconds(s.spec.jitter), paused=s.state.paused, note=s.state.note or "",
        overlap=_OVERLAP_BACK.get(s.policy.overlap, OverlapPolicy.SKIP),  # unspecified: Temporal's default, skip
        catchup_window_seconds=_seconds(s.policy.catchup_window), pause_on_failure=s.policy.pause_on_failure,
        next_fires=list(desc.info.next_action_times[:next_count]), recent_actions=recent[-recent_count:][::-1],
        workflow_type=action.workflow if isinstance(action, ScheduleActionStartWorkflow) else "",
        task_queue=action.task_queue if isinstance(action, ScheduleActionStartWorkflow) else "",
        workflow_id=action.id if isinstance(action, ScheduleActionStartWorkflow) else "")


# -- how it differs -------------------------------------------------------------------------------------


def _input_drift(expected: TriggerFireInput, args: Sequence[Any], converter: PayloadConverter) -> list[str]:
    if not args:
        return ["input: missing (every fire fails: it cannot tell which trigger to fire)"]
    if len(args) > 1:
        return [f"input: {len(args)} arguments (JobForge passes one, the trigger to fire)"]
    arg = args[0]
    try:
        got = converter.from_payload(arg, TriggerFireInput) if isinstance(arg, Payload) else \
            TriggerFireInput.model_validate(arg)
    except Exception as exc:  # any decoding failure is the finding itself
        first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        return [f"input: not a trigger fire input ({first})"]
    assert isinstance(got, TriggerFireInput)
    return [f"input: {name} {getattr(got, name)!r} (JobForge's: {getattr(expected, name)!r})"
            for name in TriggerFireInput.model_fields if getattr(got, name) != getattr(expected, name)]


def schedule_drift(trigger: Trigger, live: Schedule, task_queue: str, converter: PayloadConverter) -> list[str]:
    """What of ``live`` differs from JobForge's Schedule where only JobForge's is right (the action, the
    catch-up window): each difference in a line. A stock ``temporal schedule update`` replaces the whole
    action, which is how these appear; ``jobforge triggers repair`` puts them back."""
    want = build_action(trigger, task_queue)
    got = live.action
    if not isinstance(got, ScheduleActionStartWorkflow):
        return [f"action: {type(got).__name__} (JobForge's: start {TRIGGER_FIRE_WORKFLOW})"]
    drift: list[str] = []
    for label, have, expected in (("workflow type", got.workflow, want.workflow),
                                  ("task queue", got.task_queue, want.task_queue),
                                  ("workflow id", got.id, want.id)):
        if have != expected:
            drift.append(f"{label}: {have or 'none'!r} (JobForge's: {expected!r})")
    assert isinstance(want.args[0], TriggerFireInput)
    drift.extend(_input_drift(want.args[0], got.args, converter))
    have_sa = {pair.key.name: pair.value for pair in got.typed_search_attributes}
    for pair in want.typed_search_attributes:
        if pair.key.name not in have_sa:
            drift.append(f"search attribute {pair.key.name}: missing (JobForge's: {pair.value!r})")
        elif have_sa[pair.key.name] != pair.value:
            drift.append(f"search attribute {pair.key.name}: {have_sa[pair.key.name]!r} (JobForge's: {pair.value!r})")
    drift.extend(f"memo {key}: missing" for key in (want.memo or {}) if key not in (got.memo or {}))
    window = _seconds(live.policy.catchup_window)
    if window != trigger.catchup_window_seconds:
        reset = ", Temporal's default when an update names none" if window in (0, _seconds(TEMPORAL_DEFAULT_CATCHUP)) \
            else ""
        drift.append(f"catch-up window: {seconds_text(window)}{reset} "
                     f"(JobForge's: {seconds_text(trigger.catchup_window_seconds)})")
    return drift


def baseline_spec(trigger: Trigger) -> str:
    """The spec text JobForge last saw Temporal hold for ``trigger`` (or, before it saw one, its own)."""
    if trigger.schedule_spec:
        return trigger.schedule_spec
    if trigger.interval_seconds:
        return f"every {seconds_text(trigger.interval_seconds)}"
    return trigger.cron or "no times"


def schedule_edits(trigger: Trigger, live: LiveSchedule) -> list[str]:
    """What was changed in Temporal that JobForge keeps (valid edits): times, time zone, jitter, pause, overlap."""
    edits: list[str] = []
    if live.spec != baseline_spec(trigger):
        edits.append(f"times: {live.spec} (JobForge had {baseline_spec(trigger)})")
    if live.timezone != (trigger.timezone or "UTC"):
        edits.append(f"time zone: {live.timezone} (JobForge had {trigger.timezone})")
    if live.jitter_seconds != trigger.jitter_seconds:
        edits.append(f"jitter: {seconds_text(live.jitter_seconds)} "
                     f"(JobForge had {seconds_text(trigger.jitter_seconds)})")
    if live.paused == trigger.enabled:
        edits.append("paused in Temporal" if live.paused else "unpaused in Temporal (JobForge had it paused)")
    if live.overlap is not trigger.overlap:
        edits.append(f"overlap: {live.overlap.value} (JobForge had {trigger.overlap.value})")
    return edits


def adopt(trigger: Trigger, live: LiveSchedule, *, keep_times: bool = False) -> dict[str, Any]:
    """The trigger fields that take the live Schedule's valid values (after a create, repair or update).

    The times are taken as cron text (or an interval) only when they were edited in Temporal since
    JobForge last saw them and unless ``keep_times`` (the trigger's own text was just written).
    """
    update: dict[str, Any] = {"timezone": live.timezone, "jitter_seconds": live.jitter_seconds,
                              "overlap": live.overlap, "enabled": not live.paused, "schedule_spec": live.spec}
    if keep_times or live.spec == baseline_spec(trigger):
        return update
    if live.cron:
        update.update(cron=live.cron, interval_seconds=None)
    elif live.interval_seconds:
        update.update(cron=None, interval_seconds=live.interval_seconds)
    return update
