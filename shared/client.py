"""The JobForge SDK: ``JobForgeClient`` over the Temporal-direct transport.

``request_job`` starts the template's workflow; admission inside the workflow is authoritative, and
when the client has the store it also checks flags and inputs up front so a caller gets the typed
error at once instead of a rejected run.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from shared.canonical import input_hash
from shared.errors import IdempotencyConflict, RunFailed, StoreUnavailable
from shared.flags import FlagReader
from shared.ids import check_idempotency_key, check_tenant_id, check_trace_id, new_trace_id, workflow_id_for
from shared.models import JobRun, RunHandleInfo, RunRecord
from shared.settings import Settings
from shared.store import Store
from shared.templates import Registry
from shared.temporal import TRACE, from_failure, run_search_attributes


class JobForgeClient:
    def __init__(self, temporal: Client, settings: Settings, registry: Registry, *,
                 store: Store | None = None, flags: FlagReader | None = None) -> None:
        self.temporal = temporal
        self.settings = settings
        self.registry = registry
        self.store = store
        self.flags = flags

    async def request_job(self, tenant_id: str, template_key: str, inputs: Mapping[str, Any] | None = None,
                          trace_id: str | None = None, actor: str = "sdk",
                          idempotency_key: str | None = None) -> RunHandleInfo:
        """Start a run of ``template_key`` (or return the run this idempotency key already names)."""
        inputs = dict(inputs or {})
        check_tenant_id(tenant_id)
        trace_id = check_trace_id(trace_id) if trace_id else new_trace_id()
        if idempotency_key is not None:
            check_idempotency_key(idempotency_key)
        spec = self.registry.get(template_key)
        if self.flags is not None:
            await self.flags.require(*spec.flags)
            spec.validate_inputs(inputs)
        digest = input_hash(inputs)

        if idempotency_key is not None and self.store is not None:
            existing = await self.store.find_by_idempotency_key(tenant_id, idempotency_key)
            if existing is not None:
                self._check_same_request(existing.template_key, existing.input_hash, template_key, digest)
                return RunHandleInfo(tenant_id=tenant_id, template_key=existing.template_key,
                                     workflow_id=existing.workflow_id, run_id=existing.run_id,
                                     trace_id=existing.trace_id, created=False)

        workflow_id = workflow_id_for(tenant_id, template_key, idempotency_key)
        request_id = uuid.uuid4().hex
        job = JobRun(tenant_id=tenant_id, template_key=template_key, inputs=inputs, trace_id=trace_id,
                     actor=actor, idempotency_key=idempotency_key, input_hash=digest)
        try:
            handle: WorkflowHandle[Any, Any] = await self.temporal.start_workflow(
                template_key, job, id=workflow_id, task_queue=spec.queue(self.settings),
                search_attributes=run_search_attributes(tenant_id, template_key, trace_id),
                memo={"tenant_id": tenant_id, "input_hash": digest, "request_id": request_id, "actor": actor},
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            )
        except WorkflowAlreadyStartedError:
            handle = self.temporal.get_workflow_handle(workflow_id)
        if idempotency_key is None:
            return RunHandleInfo(tenant_id=tenant_id, template_key=template_key, workflow_id=workflow_id,
                                 run_id=handle.result_run_id or "", trace_id=trace_id, created=True)
        desc = await handle.describe()
        memo = await desc.memo()
        self._check_same_request(desc.workflow_type, str(memo.get("input_hash", "")), template_key, digest)
        return RunHandleInfo(tenant_id=tenant_id, template_key=template_key, workflow_id=workflow_id,
                             run_id=desc.run_id, trace_id=desc.typed_search_attributes.get(TRACE) or trace_id,
                             created=memo.get("request_id") == request_id)

    @staticmethod
    def _check_same_request(existing_template: str, existing_hash: str, template_key: str, digest: str) -> None:
        if existing_template != template_key:
            raise IdempotencyConflict(
                f"this idempotency key already names a run of {existing_template}, not {template_key}")
        if existing_hash and existing_hash != digest:
            raise IdempotencyConflict("this idempotency key was already used with different inputs")

    async def result(self, run: RunHandleInfo) -> BaseModel:
        """Wait for the run and return its typed result; a failed run raises its typed error."""
        spec = self.registry.get(run.template_key)
        handle = self.temporal.get_workflow_handle(run.workflow_id, run_id=run.run_id or None,
                                                   result_type=spec.output_model)
        try:
            result = await handle.result()
        except WorkflowFailureError as exc:
            typed = from_failure(exc)
            if typed is not None:
                raise typed from None
            raise RunFailed(f"run {run.workflow_id} failed: {exc.cause or exc}") from None
        assert isinstance(result, BaseModel)
        return result

    async def get_run(self, ident: str, tenant_id: str | None = None) -> RunRecord:
        return await self._store().get_run(ident, tenant_id)

    async def list_runs(self, tenant_id: str, limit: int = 50) -> Sequence[RunRecord]:
        return await self._store().list_runs(check_tenant_id(tenant_id), limit=limit)

    def _store(self) -> Store:
        if self.store is None:
            raise StoreUnavailable("this client was built without the store; run queries need it")
        return self.store

