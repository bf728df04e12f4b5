"""Trigger management: the store rows and, for cron triggers, their Temporal Schedules, kept in step."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field
from temporalio.client import Client, ScheduleHandle
from temporalio.service import RPCError, RPCStatusCode

from shared.errors import InvalidRequest
from shared.flags import Flag, FlagReader
from shared.ids import check_tenant_id
from shared.settings import Settings
from shared.store.triggers import TriggerStore
from shared.templates import Registry
from shared.triggers.models import FireOutcome, FireRecord, Trigger, TriggerFireInput, TriggerKind, TriggerSpec
from shared.triggers.schedules import TRIGGER_FIRE_WORKFLOW, build_schedule, schedule_id


class TriggerView(BaseModel):
    """A trigger as JobForge shows it: the stored spec plus its Schedule's live state (cron)."""

    model_config = ConfigDict(frozen=True)

    trigger: Trigger
    #: active | paused | disabled | schedule_missing
    state: str
    schedule_id: str | None = None
    schedule_note: str = ""
    next_fires: list[datetime] = Field(default_factory=list)
    recent_fires: int = 0


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

    async def create(self, spec: TriggerSpec) -> TriggerView:
        await self.flags.require(Flag.TRIGGERS)
        check_tenant_id(spec.tenant_id)
        template = self.registry.get(spec.template_key)
        if not spec.input_pointers:
            template.validate_inputs(spec.inputs)  # what can be checked now is checked now
        trigger = await self.store.create(spec)
        if trigger.kind is TriggerKind.CRON:
            try:
                await self.temporal.create_schedule(schedule_id(trigger.tenant_id, trigger.name),
                                                    build_schedule(trigger, self.settings.task_queue))
            except RPCError as exc:
                await self.store.delete(trigger.tenant_id, trigger.name)
                raise InvalidRequest(f"Temporal refused the schedule: {exc.message}") from None
        return await self.view(trigger)

    async def view(self, trigger: Trigger) -> TriggerView:
        recent = await self.store.count_fires(trigger.trigger_id, limit=1000)
        if trigger.kind is TriggerKind.EVENT:
            return TriggerView(trigger=trigger, state="active" if trigger.enabled else "disabled",
                               recent_fires=recent)
        sid = schedule_id(trigger.tenant_id, trigger.name)
        try:
            desc = await self._schedule(trigger).describe()
        except RPCError as exc:
            if exc.status is RPCStatusCode.NOT_FOUND:
                return TriggerView(trigger=trigger, state="schedule_missing", schedule_id=sid, recent_fires=recent)
            raise
        state = "paused" if desc.schedule.state.paused else ("active" if trigger.enabled else "disabled")
        return TriggerView(trigger=trigger, state=state, schedule_id=sid, schedule_note=desc.schedule.state.note or "",
                           next_fires=list(desc.info.next_action_times[:3]), recent_fires=recent)

    async def list(self, tenant_id: str) -> Sequence[TriggerView]:
        return list(await asyncio.gather(*(self.view(t) for t in await self.store.list(check_tenant_id(tenant_id)))))

    async def show(self, tenant_id: str, name: str) -> TriggerView:
        return await self.view(await self.store.get(tenant_id, name))

    async def pause(self, tenant_id: str, name: str, note: str = "paused with jobforge") -> TriggerView:
        trigger = await self.store.set_enabled(tenant_id, name, False)
        if trigger.kind is TriggerKind.CRON:
            await self._schedule(trigger).pause(note=note)
        return await self.view(trigger)

    async def resume(self, tenant_id: str, name: str, note: str = "resumed with jobforge") -> TriggerView:
        trigger = await self.store.set_enabled(tenant_id, name, True)
        if trigger.kind is TriggerKind.CRON:
            await self._schedule(trigger).unpause(note=note)
        return await self.view(trigger)

    async def delete(self, tenant_id: str, name: str) -> Trigger:
        trigger = await self.store.get(tenant_id, name)
        if trigger.kind is TriggerKind.CRON:
            try:
                await self._schedule(trigger).delete()
            except RPCError as exc:
                if exc.status is not RPCStatusCode.NOT_FOUND:
                    raise
        return await self.store.delete(tenant_id, name)

    async def fire(self, tenant_id: str, name: str, actor: str = "cli") -> FireOutcome:
        """Fire now, through the same workflow and safety gate as a scheduled fire."""
        await self.flags.require(Flag.TRIGGERS)
        trigger = await self.store.get(tenant_id, name)
        handle = await self.temporal.start_workflow(
            TRIGGER_FIRE_WORKFLOW,
            TriggerFireInput(tenant_id=tenant_id, trigger_id=trigger.trigger_id, trigger_name=name, source="manual",
                             actor=actor),
            id=f"jobforge/{tenant_id}/trigger/{name}/manual/{uuid.uuid4().hex}", task_queue=self.settings.task_queue,
            result_type=FireOutcome)
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
