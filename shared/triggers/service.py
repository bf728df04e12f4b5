"""Trigger management: the store rows and, for cron triggers, their Temporal Schedules, kept in step.

For a cron trigger Temporal's Schedule is the truth JobForge shows: its times, time zone, jitter,
pause state, overlap policy, next and recent actions. An edit made in Temporal (the stock CLI, the
UI) is kept when it is one JobForge can live with (times, time zone, jitter, pause, overlap) and
reported as drift when it breaks the fires (the action: input, workflow type, task queue, id,
search attributes; and the catch-up window); ``repair`` puts the latter back and ``update`` edits
through JobForge.
"""

from __future__ import annotations

import asyncio
import dataclasses
import fnmatch
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from temporalio.client import (
    Client,
    Schedule,
    ScheduleDescription,
    ScheduleHandle,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.service import RPCError, RPCStatusCode

import jobforge.models
from jobforge.errors import InvalidRequest, ScheduleMissing
from jobforge.ids import check_tenant_id
from jobforge.models import (
    FireOutcome,
    FireRecord,
    OverlapPolicy,
    SafetyConfig,
    Trigger,
    TriggerKind,
    TriggerSpec,
    Verdict,
    strict_safety_config,
)
from shared.flags import Flag, FlagReader
from shared.settings import Settings
from shared.starts import trigger_fire_start
from shared.store.triggers import TriggerStore
from shared.templates import Registry
from shared.triggers.gate import evaluate_trigger_fire
from shared.triggers.models import FireContext, TriggerState
from shared.triggers.schedules import (
    LiveSchedule,
    adopt,
    build_action,
    build_policy,
    build_schedule,
    build_spec,
    live_schedule,
    repaired,
    schedule_drift,
    schedule_edits,
    schedule_id,
)


class TriggerView(jobforge.models.TriggerView):
    """A trigger as JobForge shows it (the SDK's :class:`jobforge.models.TriggerView`) with, for a cron trigger
    whose Schedule exists, the live Schedule (the CLI and the console show it; the HTTP API leaves it out)."""

    live: LiveSchedule | None = None

    def public(self) -> jobforge.models.TriggerView:
        """What the HTTP API answers: the view without the live Schedule."""
        return jobforge.models.TriggerView.model_validate(self.model_dump(exclude={"live"}))


class TriggerChanges(BaseModel):
    """What ``jobforge triggers update`` changes; None leaves a setting as it is."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cron: str | None = None
    interval_seconds: float | None = Field(default=None, gt=0)
    timezone: str | None = None
    jitter_seconds: float | None = Field(default=None, ge=0)
    overlap: OverlapPolicy | None = None
    catchup_window_seconds: float | None = Field(default=None, ge=1)
    inputs: dict[str, Any] | None = None
    #: True: the strict safety config (keeping allow/deny lists); False: relax to the default one
    strict: bool | None = None
    dry_run: bool | None = None
    cooldown_seconds: float | None = Field(default=None, ge=0)
    #: 0 removes the limit
    max_runs: int | None = Field(default=None, ge=0)
    window_seconds: float | None = Field(default=None, gt=0)
    allow: tuple[str, ...] | None = None
    deny: tuple[str, ...] | None = None

    @property
    def schedule_fields(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump(include={"cron", "interval_seconds", "timezone", "jitter_seconds",
                                                          "overlap", "catchup_window_seconds"}).items()
                if v is not None}


def apply_changes(trigger: Trigger, changes: TriggerChanges) -> Trigger:
    """``trigger`` with ``changes`` applied and checked as a whole (pure); InvalidRequest names what is wrong."""
    if trigger.kind is TriggerKind.EVENT and changes.schedule_fields:
        raise InvalidRequest(f"{', '.join(sorted(changes.schedule_fields))}: only cron triggers have a Schedule")
    if changes.cron and changes.interval_seconds:
        raise InvalidRequest("give a cron expression or an interval, not both")
    safety = trigger.safety
    if changes.strict is True:
        safety = strict_safety_config().model_copy(update={"allow": safety.allow, "deny": safety.deny})
    elif changes.strict is False:
        safety = SafetyConfig(allow=safety.allow, deny=safety.deny)
    update: dict[str, Any] = {k: v for k, v in {
        "dry_run": changes.dry_run, "cooldown_seconds": changes.cooldown_seconds,
        "window_seconds": changes.window_seconds, "allow": changes.allow, "deny": changes.deny}.items()
        if v is not None}
    if changes.max_runs is not None:
        update["max_runs"] = changes.max_runs or None
    fields: dict[str, Any] = dict(changes.schedule_fields)
    if changes.cron:
        fields["interval_seconds"] = None
    elif changes.interval_seconds:
        fields["cron"] = None
    if changes.inputs is not None:
        fields["inputs"] = changes.inputs
    try:
        new_safety = SafetyConfig.model_validate({**safety.model_dump(), **update})
        data = {**trigger.model_dump(), **fields, "safety": new_safety}
        return Trigger.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'trigger'}: {e['msg']}"
                             for e in exc.errors(include_url=False, include_input=False))
        raise InvalidRequest(problems) from None


def check_safety(safety: SafetyConfig, template_key: str) -> None:
    """Refuse a safety config no fire could ever pass: an allow list required and none given."""
    if safety.allow_required and not safety.allow:
        raise InvalidRequest(
            "a strict trigger needs an allow list, or no fire could ever pass (not even as a dry run): add "
            f"--allow template:{template_key} (or event_type:, source_app:, actor: entries)")


def static_skip(trigger: Trigger) -> str:
    """Why the safety gate skips every fire of ``trigger`` whatever happens (pure), else ''.

    For a cron trigger, its scheduled fires are judged as the gate judges them (deny and allow lists
    see its template and actor); any trigger that requires an allow list with none given skips all.
    """
    tenant = f" --tenant {trigger.tenant_id}"
    if trigger.safety.allow_required and not trigger.safety.allow:
        return (f"every fire is skipped: strict triggers need an allow list and this one has none; add one with "
                f"`jobforge triggers update {trigger.name}{tenant} --allow template:{trigger.template_key}` or relax "
                f"it with `jobforge triggers update {trigger.name}{tenant} --no-strict`")
    if trigger.kind is not TriggerKind.CRON:
        # whatever the event: a deny entry on the template, or an allow list of template entries none of which match
        template = trigger.template_key
        denied = [e for e in trigger.safety.deny
                  if e.startswith("template:") and fnmatch.fnmatchcase(template, e.partition(":")[2])]
        allow = trigger.safety.allow
        if denied:
            why = f"denied by {denied[0]}"
        elif allow and all(e.startswith("template:") and not fnmatch.fnmatchcase(template, e.partition(":")[2])
                           for e in allow):
            why = "no allow-list entry matches its template"
        else:
            return ""
        return (f"every fire is skipped: {why} (its template is {template!r}); change the lists with "
                f"`jobforge triggers update {trigger.name}{tenant} --allow ... --deny ...`")
    probe = trigger.model_copy(update={"enabled": True, "paused": False})
    decision = evaluate_trigger_fire(probe, TriggerState(), datetime.fromtimestamp(0, UTC),
                                     FireContext(source="schedule", actor=trigger.actor), triggers_enabled=True)
    if decision.verdict is Verdict.SKIP:
        return (f"every scheduled fire is skipped: {'; '.join(decision.reasons)} (the fire's template is "
                f"{trigger.template_key!r} and its actor {trigger.actor!r}); change the lists with "
                f"`jobforge triggers update {trigger.name}{tenant} --allow ... --deny ...`")
    return ""


def _state(trigger: Trigger, live: LiveSchedule | None, drift: list[str]) -> str:
    if trigger.kind is TriggerKind.EVENT:
        return "active" if trigger.enabled else "disabled"
    if live is None:
        return "schedule_missing"
    if drift:
        return "drifted"
    if live.paused:
        return "paused"
    return "active" if trigger.enabled else "disabled"


class TriggerService:
    def __init__(self, store: TriggerStore, temporal: Client, settings: Settings, registry: Registry,
                 flags: FlagReader) -> None:
        self.store = store
        self.temporal = temporal
        self.settings = settings
        self.registry = registry
        self.flags = flags

    def _schedule(self, trigger: Trigger) -> ScheduleHandle:
        return self.temporal.get_schedule_handle(schedule_id(trigger.tenant_id, trigger.name))

    def _missing(self, trigger: Trigger) -> ScheduleMissing:
        return ScheduleMissing(trigger.name, trigger.tenant_id, schedule_id(trigger.tenant_id, trigger.name))

    async def _describe(self, trigger: Trigger) -> ScheduleDescription | None:
        try:
            return await self._schedule(trigger).describe()
        except RPCError as exc:
            if exc.status is RPCStatusCode.NOT_FOUND:
                return None
            raise

    async def _on_schedule(self, trigger: Trigger, op: str, **kwargs: Any) -> None:
        """Call ``op`` on the trigger's Schedule; a Schedule deleted outside JobForge is ScheduleMissing."""
        try:
            await getattr(self._schedule(trigger), op)(**kwargs)
        except RPCError as exc:
            if exc.status is RPCStatusCode.NOT_FOUND:
                raise self._missing(trigger) from None
            raise

    async def _checked_update(self, trigger: Trigger, build: Any) -> None:
        async def updater(current: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=build(current.description.schedule))

        try:
            await self._schedule(trigger).update(updater)
        except RPCError as exc:
            if exc.status is RPCStatusCode.NOT_FOUND:
                raise self._missing(trigger) from None
            if exc.status is RPCStatusCode.INVALID_ARGUMENT:
                raise InvalidRequest(f"Temporal refused the schedule: {exc.message}") from None
            raise

    async def _adopt(self, trigger: Trigger, *, keep_times: bool = False) -> Trigger:
        """Store the Schedule's valid live values (times, time zone, jitter, overlap, pause) on the trigger."""
        desc = await self._describe(trigger)
        if desc is None:
            return trigger
        return await self.store.save(trigger.model_copy(
            update=adopt(trigger, live_schedule(desc), keep_times=keep_times)))

    async def create(self, spec: TriggerSpec) -> TriggerView:
        await self.flags.require(Flag.TRIGGERS)
        check_tenant_id(spec.tenant_id)
        template = self.registry.get(spec.template_key)
        if not spec.input_pointers:
            template.validate_inputs(spec.inputs)  # what can be checked now is checked now
        check_safety(spec.safety, spec.template_key)
        trigger = await self.store.create(spec)
        if trigger.kind is TriggerKind.CRON:
            try:
                await self.temporal.create_schedule(schedule_id(trigger.tenant_id, trigger.name),
                                                    build_schedule(trigger, self.settings.task_queue))
            except RPCError as exc:
                await self.store.delete(trigger.tenant_id, trigger.name)
                raise InvalidRequest(f"Temporal refused the schedule: {exc.message}") from None
            trigger = await self._adopt(trigger, keep_times=True)
        return await self.view(trigger)

    async def view(self, trigger: Trigger) -> TriggerView:
        recent = await self.store.count_fires(trigger.trigger_id, limit=1000)
        common: dict[str, Any] = {"trigger": trigger, "recent_fires": recent, "skips": static_skip(trigger),
                                  "strict": trigger.strict}
        if trigger.kind is TriggerKind.EVENT:
            return TriggerView(state=_state(trigger, None, []), **common)
        sid = schedule_id(trigger.tenant_id, trigger.name)
        desc = await self._describe(trigger)
        where = f"{trigger.name} --tenant {trigger.tenant_id}"
        if desc is None:
            return TriggerView(state="schedule_missing", schedule_id=sid,
                               fix=f"jobforge triggers repair {where}  (or: jobforge triggers delete {where})",
                               **common)
        live = live_schedule(desc)
        drift = schedule_drift(trigger, desc.schedule, self.settings.task_queue,
                               self.temporal.data_converter.payload_converter)
        return TriggerView(state=_state(trigger, live, drift), schedule_id=sid, schedule_note=live.note,
                           next_fires=live.next_fires, live=live, drift=drift, edited=schedule_edits(trigger, live),
                           fix=f"jobforge triggers repair {where}" if drift else "", **common)

    async def list(self, tenant_id: str) -> Sequence[TriggerView]:
        return list(await asyncio.gather(*(self.view(t) for t in await self.store.list(check_tenant_id(tenant_id)))))

    async def show(self, tenant_id: str, name: str) -> TriggerView:
        return await self.view(await self.store.get(tenant_id, name))

    async def pause(self, tenant_id: str, name: str, note: str = "paused with jobforge") -> TriggerView:
        trigger = await self.store.get(tenant_id, name)
        if trigger.kind is TriggerKind.CRON:
            await self._on_schedule(trigger, "pause", note=note)
        return await self.view(await self.store.set_enabled(tenant_id, name, False))

    async def resume(self, tenant_id: str, name: str, note: str = "resumed with jobforge") -> TriggerView:
        trigger = await self.store.get(tenant_id, name)
        if trigger.kind is TriggerKind.CRON:
            await self._on_schedule(trigger, "unpause", note=note)
        return await self.view(await self.store.set_enabled(tenant_id, name, True))

    async def delete(self, tenant_id: str, name: str) -> Trigger:
        trigger = await self.store.get(tenant_id, name)
        if trigger.kind is TriggerKind.CRON:
            try:
                await self._schedule(trigger).delete()
            except RPCError as exc:
                if exc.status is not RPCStatusCode.NOT_FOUND:
                    raise
        return await self.store.delete(tenant_id, name)

    async def repair(self, tenant_id: str, name: str) -> tuple[TriggerView, Sequence[str]]:
        """Put a cron trigger's Schedule right: recreate it if it is gone, else restore its action (input,
        workflow type, task queue, id, search attributes) and catch-up window, keeping the valid edits made
        in Temporal (times, time zone, jitter, pause, overlap), which the trigger then adopts. Answers the
        view after and what was done, a line each."""
        trigger = await self.store.get(tenant_id, name)
        if trigger.kind is not TriggerKind.CRON:
            raise InvalidRequest(f"trigger {name!r} is an event trigger: it has no Schedule to repair")
        desc = await self._describe(trigger)
        if desc is None:
            try:
                await self.temporal.create_schedule(schedule_id(tenant_id, name),
                                                    build_schedule(trigger, self.settings.task_queue))
            except RPCError as exc:
                raise InvalidRequest(f"Temporal refused the schedule: {exc.message}") from None
            done = [f"recreated the Schedule {schedule_id(tenant_id, name)} from the trigger"]
        else:
            drift = schedule_drift(trigger, desc.schedule, self.settings.task_queue,
                                   self.temporal.data_converter.payload_converter)
            kept = schedule_edits(trigger, live_schedule(desc))
            if drift:
                await self._checked_update(trigger, lambda live: repaired(trigger, live, self.settings.task_queue))
            done = [f"restored {d}" for d in drift] or ["the Schedule's action was right: nothing to restore"]
            done += [f"kept {k}" for k in kept]
        view = await self.view(await self._adopt(trigger))
        return view, done

    async def update(self, tenant_id: str, name: str, changes: TriggerChanges) -> TriggerView:
        """Change a trigger through JobForge: its times, time zone, jitter, overlap policy, catch-up window,
        inputs and safety config. A cron trigger's Schedule gets JobForge's action back too (an update also
        repairs drift); what is not changed keeps its live value."""
        trigger = await self.store.get(tenant_id, name)
        new = apply_changes(trigger, changes)
        check_safety(new.safety, new.template_key)
        if changes.inputs is not None and not new.input_pointers:
            self.registry.get(new.template_key).validate_inputs(new.inputs)
        if new.kind is TriggerKind.CRON:
            await self._checked_update(new, lambda live: self._updated(new, live, changes))
            new = await self._adopt(await self.store.save(new),
                                    keep_times=bool(changes.cron or changes.interval_seconds))
        else:
            new = await self.store.save(new)
        return await self.view(new)

    def _updated(self, new: Trigger, live: Schedule, changes: TriggerChanges) -> Schedule:
        spec = live.spec
        if changes.cron or changes.interval_seconds:
            fresh = build_spec(new)
            spec = dataclasses.replace(spec, calendars=[], cron_expressions=fresh.cron_expressions,
                                       intervals=fresh.intervals, skip=[], start_at=None, end_at=None)
        if changes.timezone is not None:
            spec = dataclasses.replace(spec, time_zone_name=new.timezone)
        if changes.jitter_seconds is not None:
            spec = dataclasses.replace(spec, jitter=timedelta(seconds=new.jitter_seconds) if new.jitter_seconds
                                       else None)
        policy = build_policy(new, pause_on_failure=live.policy.pause_on_failure)
        if changes.overlap is None:
            policy = dataclasses.replace(policy, overlap=live.policy.overlap)
        return Schedule(action=build_action(new, self.settings.task_queue), spec=spec, policy=policy,
                        state=live.state)

    async def fire(self, tenant_id: str, name: str, actor: str = "cli") -> FireOutcome:
        """Fire now, through the same workflow and safety gate as a scheduled fire."""
        await self.flags.require(Flag.TRIGGERS)
        trigger = await self.store.get(tenant_id, name)
        if trigger.kind is TriggerKind.CRON and await self._describe(trigger) is None:
            raise self._missing(trigger)
        start = trigger_fire_start(trigger, source="manual", actor=actor, task_queue=self.settings.task_queue,
                                   id=f"jobforge/{tenant_id}/trigger/{name}/manual/{uuid.uuid4().hex}")
        handle = await start.start(self.temporal, result_type=FireOutcome)
        outcome = await handle.result()
        assert isinstance(outcome, FireOutcome)
        return outcome

    async def dry_runs(self, tenant_id: str, name: str | None = None, limit: int = 100) -> Sequence[FireRecord]:
        if name is not None:
            await self.store.get(tenant_id, name)  # a typo answers TriggerNotFound, not an empty list
        return await self.store.fires(tenant_id, trigger_name=name, verdict="dry_run", limit=limit)

    async def fires(self, tenant_id: str, name: str | None = None, limit: int = 100) -> Sequence[FireRecord]:
        if name is not None:
            await self.store.get(tenant_id, name)
        return await self.store.fires(tenant_id, trigger_name=name, limit=limit)
