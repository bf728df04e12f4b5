"""How JobForge starts workflows: one builder of start options, JobForge's search attributes included.

Every workflow JobForge starts — a template run (SDK, CLI, HTTP API, trigger fires), a trigger fire
(``jobforge triggers fire``, a cron trigger's Schedule action), a tenant's event router — is started
with a :class:`StartOptions` built by :func:`start_options`, so it carries ``JobForgeTenant``,
``JobForgeTemplate`` and ``JobForgeTrace`` from its first event and shows under its tenant's filter
(``temporal workflow count --query 'JobForgeTenant="acme"'``). The same options start a workflow now
(:meth:`StartOptions.start`) or become a Schedule's action (:meth:`StartOptions.schedule_action`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from temporalio.client import Client, ScheduleActionStartWorkflow, WorkflowHandle
from temporalio.common import TypedSearchAttributes

from jobforge.models import JobRun, Trigger
from shared.temporal import run_search_attributes
from shared.triggers.models import TriggerFireInput
from shared.triggers.schedules import TRIGGER_FIRE_WORKFLOW


@dataclass(frozen=True, slots=True)
class StartOptions:
    """A workflow start as JobForge makes it: type, argument, id, task queue, search attributes, memo."""

    workflow: str
    arg: Any
    id: str
    task_queue: str
    search_attributes: TypedSearchAttributes
    memo: Mapping[str, Any] | None = None

    async def start(self, client: Client, **options: Any) -> WorkflowHandle[Any, Any]:
        """Start it now (``options``: id policies, ``result_type``, eager start, ...)."""
        return await client.start_workflow(self.workflow, self.arg, id=self.id, task_queue=self.task_queue,
                                           search_attributes=self.search_attributes, memo=self.memo, **options)

    def schedule_action(self) -> ScheduleActionStartWorkflow:
        """The same start as a Schedule's action (Temporal appends the scheduled time to the id)."""
        return ScheduleActionStartWorkflow(self.workflow, self.arg, id=self.id, task_queue=self.task_queue,
                                           typed_search_attributes=self.search_attributes, memo=self.memo)


def start_options(workflow: str, arg: Any, *, tenant_id: str, id: str, task_queue: str, trace_id: str = "",
                  template: str | None = None, memo: Mapping[str, Any] | None = None) -> StartOptions:
    """The one builder: ``JobForgeTemplate`` is ``template`` (default: the workflow type)."""
    return StartOptions(workflow=workflow, arg=arg, id=id, task_queue=task_queue,
                        search_attributes=run_search_attributes(tenant_id, template or workflow, trace_id), memo=memo)


#: the memo key by which a template run's starter tells the workflow its bookkeeping steps are local
#: activities (value :data:`LOCAL`): the run then skips the ``jobforge.bookkeeping-local`` patch check,
#: whose marker and ``TemporalChangeVersion`` upsert would cost two history events and a visibility write.
#: Runs started before local bookkeeping never carry it (their histories take the patch's old path).
BOOKKEEPING_MEMO = "bookkeeping"
LOCAL = "local"


def job_start(job: JobRun, *, id: str, task_queue: str, memo: Mapping[str, Any] | None = None) -> StartOptions:
    """A template run: the workflow type is the template key, the argument the JobRun; the memo also says
    the run's bookkeeping is local (:data:`BOOKKEEPING_MEMO`)."""
    return start_options(job.template_key, job, tenant_id=job.tenant_id, trace_id=job.trace_id, id=id,
                         task_queue=task_queue, memo={**(memo or {}), BOOKKEEPING_MEMO: LOCAL})


def trigger_fire_start(trigger: Trigger, *, source: str, actor: str, id: str, task_queue: str) -> StartOptions:
    """One fire of ``trigger`` (``jobforge.trigger.fire``): a Schedule's action or ``jobforge triggers fire``.

    Its ``JobForgeTrace`` is the trigger's id, so every fire of a trigger is found with one query.
    """
    return start_options(
        TRIGGER_FIRE_WORKFLOW,
        TriggerFireInput(tenant_id=trigger.tenant_id, trigger_id=trigger.trigger_id, trigger_name=trigger.name,
                         source=source, actor=actor),
        tenant_id=trigger.tenant_id, trace_id=trigger.trigger_id, id=id, task_queue=task_queue)
