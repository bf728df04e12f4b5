"""The JobForge SDK straight through Temporal (``pip install 'jobforge[temporal]'``), for code inside the
network that reaches Temporal but not JobForge's database.

:class:`TemporalJobForgeClient` starts a template's workflow with its typed argument
(:class:`~jobforge.models.JobRun`) and the ``JobForgeTenant`` / ``JobForgeTemplate`` / ``JobForgeTrace``
search attributes, and reads its result. It carries no admission receipt: the workflow's first step,
admission on the worker, applies the full security gate as it does for any raw start (tenant, template,
flags, input validation, limits, a policy token for action jobs, audit), so this transport needs no
PostgreSQL and grants nothing a raw ``temporal workflow start`` would not. A refused run fails with the
error's code, rebuilt here as the same typed error (:func:`jobforge.errors.typed_error`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from temporalio.client import Client, WorkflowFailureError
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError

from jobforge.errors import RunFailed, TemporalUnavailable, typed_error
from jobforge.ids import check_idempotency_key, check_tenant_id, check_trace_id, new_trace_id, workflow_id_for
from jobforge.models import JobRun, RunHandleInfo

#: the task queue a JobForge worker serves unless configured otherwise (``JOBFORGE_TASK_QUEUE``)
DEFAULT_TASK_QUEUE = "jobforge"
TENANT = SearchAttributeKey.for_keyword("JobForgeTenant")
TEMPLATE = SearchAttributeKey.for_keyword("JobForgeTemplate")
TRACE = SearchAttributeKey.for_keyword("JobForgeTrace")


class TemporalJobForgeClient:
    """``request_job`` and ``result`` over a Temporal client; admission on the worker applies the gate."""

    def __init__(self, temporal: Client, *, task_queue: str = DEFAULT_TASK_QUEUE) -> None:
        self.temporal = temporal
        self.task_queue = task_queue

    @classmethod
    async def connect(cls, target: str, *, namespace: str = "default",
                      task_queue: str = DEFAULT_TASK_QUEUE) -> TemporalJobForgeClient:
        """Connect to Temporal at ``target`` (``host:port``) with the data converter JobForge's workers use."""
        try:
            client = await Client.connect(target, namespace=namespace, data_converter=pydantic_data_converter)
        except RuntimeError as exc:  # the core SDK reports a failed connection as RuntimeError
            raise TemporalUnavailable(f"cannot reach Temporal at {target}: {exc}") from None
        return cls(client, task_queue=task_queue)

    async def request_job(self, tenant_id: str, template_key: str, inputs: Mapping[str, Any] | None = None,
                          trace_id: str | None = None, actor: str = "sdk", idempotency_key: str | None = None,
                          policy_token: str | None = None) -> RunHandleInfo:
        """Start a run of ``template_key`` for ``tenant_id``; admission decides whether it runs.

        With an idempotency key the workflow id is ``jobforge/{tenant}/idem/{key}`` and a second start
        under it is refused by Temporal. ``policy_token`` enters history only as its one-way reference.
        """
        check_tenant_id(tenant_id)
        trace_id = check_trace_id(trace_id) if trace_id else new_trace_id()
        if idempotency_key is not None:
            check_idempotency_key(idempotency_key)
        workflow_id = workflow_id_for(tenant_id, template_key, idempotency_key)
        policy_ref = "sha256:" + hashlib.sha256(policy_token.encode()).hexdigest() if policy_token else ""
        job = JobRun(tenant_id=tenant_id, template_key=template_key, inputs=dict(inputs or {}), trace_id=trace_id,
                     actor=actor, idempotency_key=idempotency_key, policy_ref=policy_ref)
        attributes = TypedSearchAttributes([SearchAttributePair(TENANT, tenant_id),
                                            SearchAttributePair(TEMPLATE, template_key),
                                            SearchAttributePair(TRACE, trace_id)])
        try:
            handle = await self.temporal.start_workflow(template_key, job, id=workflow_id, task_queue=self.task_queue,
                                                        search_attributes=attributes)
        except RPCError as exc:
            raise TemporalUnavailable(f"Temporal refused the start: {exc.message}") from None
        return RunHandleInfo(tenant_id=tenant_id, template_key=template_key, workflow_id=workflow_id,
                             run_id=handle.result_run_id or "", trace_id=trace_id, created=True)

    async def result(self, handle: RunHandleInfo) -> Any:
        """The run's result (as the worker returned it, decoded as JSON); a refused or failed run raises its
        typed error (``RunFailed`` when the failure carries no JobForge code)."""
        try:
            return await self.temporal.get_workflow_handle(handle.workflow_id, run_id=handle.run_id).result()
        except WorkflowFailureError as exc:
            typed = typed_error(exc)
            if typed is not None:
                raise typed from None
            raise RunFailed(f"run {handle.workflow_id} failed: {exc.cause}") from None

