"""Temporal Schedules of cron triggers: ids and specs (pure)."""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import (
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
)

from shared.temporal import run_search_attributes
from shared.triggers.models import OverlapPolicy, Trigger, TriggerFireInput

TRIGGER_FIRE_WORKFLOW = "jobforge.trigger.fire"
#: before the per-tenant router, one routing workflow per event (kept for recorded histories)
ROUTE_EVENT_WORKFLOW = "jobforge.event.route"
EVENT_ROUTER_WORKFLOW = "jobforge.event.router"

_OVERLAP = {
    OverlapPolicy.SKIP: ScheduleOverlapPolicy.SKIP, OverlapPolicy.BUFFER_ONE: ScheduleOverlapPolicy.BUFFER_ONE,
    OverlapPolicy.BUFFER_ALL: ScheduleOverlapPolicy.BUFFER_ALL,
    OverlapPolicy.CANCEL_OTHER: ScheduleOverlapPolicy.CANCEL_OTHER,
    OverlapPolicy.TERMINATE_OTHER: ScheduleOverlapPolicy.TERMINATE_OTHER,
    OverlapPolicy.ALLOW_ALL: ScheduleOverlapPolicy.ALLOW_ALL,
}


def schedule_id(tenant_id: str, name: str) -> str:
    return f"jobforge/{tenant_id}/trigger/{name}"


def fire_workflow_id(tenant_id: str, name: str) -> str:
    """The id prefix of a trigger's fire workflows (Temporal appends the scheduled time)."""
    return f"jobforge/{tenant_id}/trigger/{name}/fire"


def build_schedule(trigger: Trigger, task_queue: str) -> Schedule:
    spec = ScheduleSpec(
        cron_expressions=[trigger.cron] if trigger.cron else [],
        intervals=[ScheduleIntervalSpec(every=timedelta(seconds=trigger.interval_seconds))]
        if trigger.interval_seconds else [],
        jitter=timedelta(seconds=trigger.jitter_seconds) if trigger.jitter_seconds else None,
        time_zone_name=trigger.timezone,
    )
    action = ScheduleActionStartWorkflow(
        TRIGGER_FIRE_WORKFLOW,
        TriggerFireInput(tenant_id=trigger.tenant_id, trigger_id=trigger.trigger_id, trigger_name=trigger.name,
                         source="schedule", actor=trigger.actor),
        id=fire_workflow_id(trigger.tenant_id, trigger.name),
        task_queue=task_queue,
        typed_search_attributes=run_search_attributes(trigger.tenant_id, TRIGGER_FIRE_WORKFLOW, trigger.trigger_id),
    )
    return Schedule(
        action=action, spec=spec,
        policy=SchedulePolicy(overlap=_OVERLAP[trigger.overlap],
                              catchup_window=timedelta(seconds=trigger.catchup_window_seconds)),
        state=ScheduleState(paused=not trigger.enabled,
                            note=f"JobForge trigger {trigger.name} → {trigger.template_key}"),
    )
