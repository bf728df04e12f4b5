"""The JobForge SDK: one interface, two transports with the same methods and the same errors.

* :class:`OperatorClient` — Temporal-direct. Trusted operator access: it runs the security gate
  itself (as ``settings.operator_scopes``, ``*:*`` unless configured, or the ``principal`` given)
  and starts the template's workflow with the signed admission receipt. Built without the gate
  (no store), it starts the workflow bare and the admission activity applies the full gate.
* :class:`jobforge.JobForgeClient` (the ``jobforge`` distribution, ``sdk/``) — over the HTTP ingress with a
  tenant API key.

Both implement :class:`JobForgeSDK`: ``submit_event``, ``request_job``, ``get_run``,
``list_artifacts``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from jobforge.errors import IdempotencyConflict, RunFailed, StoreUnavailable, typed_error
from jobforge.ids import check_idempotency_key, check_tenant_id, check_trace_id, new_trace_id, workflow_id_for
from jobforge.models import (
    ArtifactRecord,
    EventEnvelope,
    EventReceipt,
    JobRun,
    RouteEventResult,
    RunHandleInfo,
    RunRecord,
)
from shared.canonical import input_hash
from shared.events import route_admitted, wait_routed
from shared.flags import FlagReader
from shared.gate import Charge
from shared.outages import typed_outages
from shared.security.limits import check_storable
from shared.security.principal import Principal
from shared.security.scopes import require_scopes
from shared.security.tokens import token_ref
from shared.settings import Settings
from shared.stale_runs import settle
from shared.starts import job_start
from shared.store import Store
from shared.templates import Registry
from shared.temporal import TRACE

if TYPE_CHECKING:
    from jobforge.client import JobForgeClient as HttpClient
    from shared.gate import Gate, JobAdmission


class JobForgeSDK(Protocol):
    """What every transport offers; failures are the typed errors of :mod:`jobforge.errors`."""

    async def submit_event(self, event: EventEnvelope) -> EventReceipt: ...

    async def request_job(self, tenant_id: str, template_key: str, inputs: Mapping[str, Any] | None = None,
                          trace_id: str | None = None, actor: str = "sdk", idempotency_key: str | None = None,
                          policy_token: str | None = None) -> RunHandleInfo: ...

    async def get_run(self, ident: str, tenant_id: str | None = None) -> RunRecord: ...

    async def list_artifacts(self, run_id: str, tenant_id: str | None = None) -> Sequence[ArtifactRecord]: ...


class OperatorClient:
    def __init__(self, temporal: Client, settings: Settings, registry: Registry, *,
                 store: Store | None = None, flags: FlagReader | None = None, gate: Gate | None = None,
                 principal: Principal | None = None) -> None:
        self.temporal = temporal
        self.settings = settings
        self.registry = registry
        self.store = store
        self.flags = flags
        self.gate = gate
        self.principal = principal

    @staticmethod
    def http(base_url: str, api_key: str, **options: Any) -> HttpClient:
        """The same SDK over the HTTP ingress (``jobforge-api``) with a tenant API key."""
        from jobforge.client import JobForgeClient as HttpClient

        return HttpClient(base_url, api_key, **options)

    def _principal(self, actor: str) -> Principal:
        return self.principal or Principal.operator(actor, tuple(self.settings.operator_scopes))

    @typed_outages
    async def submit_event(self, event: EventEnvelope) -> EventReceipt:
        """Pass ``event`` through the gate (flag, scopes, limits, rate limit, dedupe, audit), then start its
        durable routing (store + triggers); a duplicate within the TTL is answered, not routed."""
        if self.gate is None:
            raise StoreUnavailable("this client was built without the gate; events need it")
        principal = self._principal("sdk")
        receipt = (await self.gate.admit_event(event, principal)).receipt
        if not receipt.duplicate:
            await route_admitted(self.temporal, self.settings, self.gate, event, receipt, principal.actor, stored=True)
        return receipt

    @typed_outages
    async def wait_routed(self, receipt: EventReceipt, within: float = 60.0) -> RouteEventResult:
        """Wait until a submitted event has been routed: the triggers it matched, each fire's verdict and run."""
        if self.store is None:
            raise StoreUnavailable("this client was built without the store; routing results live there")
        return await wait_routed(self.store.triggers, receipt, within)

    @typed_outages
    async def request_job(self, tenant_id: str, template_key: str, inputs: Mapping[str, Any] | None = None,
                          trace_id: str | None = None, actor: str = "sdk", idempotency_key: str | None = None,
                          policy_token: str | None = None, *, known_new: bool = False) -> RunHandleInfo:
        """Start a run of ``template_key`` (or return the run this idempotency key already names).

        ``known_new``: the caller minted ``idempotency_key`` itself just now, so no run can hold it
        yet and the store lookup is skipped (Temporal's id policies still refuse a second start).
        """
        handle, _ = await self.submit_job(tenant_id, template_key, inputs, trace_id=trace_id, actor=actor,
                                          idempotency_key=idempotency_key, policy_token=policy_token,
                                          known_new=known_new)
        return handle

    @typed_outages
    async def submit_job(self, tenant_id: str, template_key: str, inputs: Mapping[str, Any] | None = None,
                         trace_id: str | None = None, actor: str = "sdk", idempotency_key: str | None = None,
                         policy_token: str | None = None, *, known_new: bool = False,
                         charged: Charge | None = None) -> tuple[RunHandleInfo, JobAdmission | None]:
        """:meth:`request_job`, also answering the gate's admission (rate-limit state) when it ran.

        ``charged``: the request was already charged to the rate limit (the HTTP ingress does that).
        """
        inputs = dict(inputs or {})
        check_tenant_id(tenant_id)
        trace_id = check_trace_id(trace_id) if trace_id else new_trace_id()
        if idempotency_key is not None:
            check_idempotency_key(idempotency_key)
        spec = self.registry.get(template_key)
        principal = self._principal(actor)
        lookup = idempotency_key is not None and self.store is not None and not known_new
        # the gate checks the inputs' text and hashes them once, after the rate limit; here only to look
        # an idempotency key up first, or without a gate
        digest = ""
        if lookup or self.gate is None:
            check_storable(inputs, "the inputs")  # before hashing them: a lone surrogate has no bytes to hash
            digest = input_hash(inputs)

        if lookup:
            assert idempotency_key is not None and self.store is not None
            existing = await self.store.find_by_idempotency_key(tenant_id, idempotency_key)
            if existing is not None:
                require_scopes(principal.scopes, spec.required_scopes)
                self._check_same_request(existing.template_key, existing.input_hash, template_key, digest)
                return RunHandleInfo(tenant_id=tenant_id, template_key=existing.template_key,
                                     workflow_id=existing.workflow_id, run_id=existing.run_id,
                                     trace_id=existing.trace_id, created=False), None

        workflow_id = workflow_id_for(tenant_id, template_key, idempotency_key)
        job = JobRun(tenant_id=tenant_id, template_key=template_key, inputs=inputs, trace_id=trace_id,
                     actor=actor, idempotency_key=idempotency_key, input_hash=digest)
        admission: JobAdmission | None = None
        if self.gate is not None:
            admission = await self.gate.admit_job(job, principal, workflow_id=workflow_id, policy_token=policy_token,
                                                  charged=charged)
            digest = admission.judged.input_hash
            job = job.model_copy(update={"receipt": admission.receipt, "input_hash": digest})
        else:
            if self.flags is not None:
                await self.flags.require(*spec.flags)
                spec.validate_inputs(inputs)
            if policy_token:  # the token itself never enters history: only its one-way reference
                job = job.model_copy(update={"policy_ref": token_ref(policy_token)})
        return await self._start(job, spec.queue(self.settings), workflow_id, digest), admission

    async def _start(self, job: JobRun, task_queue: str, workflow_id: str, digest: str) -> RunHandleInfo:
        request_id = uuid.uuid4().hex
        try:
            # the memo holds what a repeated request is compared with (the tenant is the JobForgeTenant
            # attribute, the actor is in the argument)
            start = job_start(job, id=workflow_id, task_queue=task_queue,
                              memo={"input_hash": digest, "request_id": request_id})
            handle: WorkflowHandle[Any, Any] = await start.start(
                self.temporal,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                # a worker sharing this client (a trigger fire inside a worker) takes the first task at once
                request_eager_start=True,
            )
        except WorkflowAlreadyStartedError:
            handle = self.temporal.get_workflow_handle(workflow_id)
        started = getattr(handle, "_start_workflow_response", None)
        if job.idempotency_key is None or (started is not None and started.started):
            # a fresh start under this id: nothing earlier to compare with, no describe round trip needed
            info = RunHandleInfo(tenant_id=job.tenant_id, template_key=job.template_key, workflow_id=workflow_id,
                                 run_id=handle.result_run_id or "", trace_id=job.trace_id, created=True)
        else:
            desc = await handle.describe()
            memo = await desc.memo()
            self._check_same_request(desc.workflow_type, str(memo.get("input_hash", "")), job.template_key, digest)
            info = RunHandleInfo(tenant_id=job.tenant_id, template_key=job.template_key, workflow_id=workflow_id,
                                 run_id=desc.run_id, trace_id=desc.typed_search_attributes.get(TRACE) or job.trace_id,
                                 created=memo.get("request_id") == request_id)
        if self.store is not None and info.run_id:
            # the run is readable (as queued) as soon as its id is handed out; admission moves it on
            await self.store.record_queued(tenant_id=info.tenant_id, template_key=info.template_key,
                                           workflow_id=workflow_id, run_id=info.run_id, trace_id=info.trace_id,
                                           actor=job.actor, idempotency_key=job.idempotency_key,
                                           input_hash=digest)
        return info

    @staticmethod
    def _check_same_request(existing_template: str, existing_hash: str, template_key: str, digest: str) -> None:
        if existing_template != template_key:
            raise IdempotencyConflict(
                f"this idempotency key already names a run of {existing_template}, not {template_key}")
        if existing_hash and existing_hash != digest:
            raise IdempotencyConflict("this idempotency key was already used with different inputs")

    @typed_outages
    async def result(self, run: RunHandleInfo) -> BaseModel:
        """Wait for the run and return its typed result; a failed run raises its typed error."""
        spec = self.registry.get(run.template_key)
        handle = self.temporal.get_workflow_handle(run.workflow_id, run_id=run.run_id or None,
                                                   result_type=spec.output_model)
        try:
            result = await handle.result()
        except WorkflowFailureError as exc:
            typed = typed_error(exc)
            if typed is not None:
                raise typed from None
            raise RunFailed(f"run {run.workflow_id} failed: {exc.cause or exc}") from None
        assert isinstance(result, BaseModel)
        return result

    @typed_outages
    async def get_run(self, ident: str, tenant_id: str | None = None) -> RunRecord:
        """The run's record; one still ``queued`` whose workflow has closed gets its terminal status first."""
        return await settle(self._store(), self.temporal, await self._store().get_run(ident, tenant_id))

    @typed_outages
    async def list_runs(self, tenant_id: str, limit: int = 50) -> Sequence[RunRecord]:
        return await self._store().list_runs(check_tenant_id(tenant_id), limit=limit)

    @typed_outages
    async def list_artifacts(self, run_id: str, tenant_id: str | None = None) -> Sequence[ArtifactRecord]:
        """The artifacts of a run (found by run id or workflow id; ``tenant_id`` pins the tenant)."""
        run = await self.get_run(run_id, tenant_id)
        return await self._store().list_artifacts(run.tenant_id, run.run_id)

    def _store(self) -> Store:
        if self.store is None:
            raise StoreUnavailable("this client was built without the store; run queries need it")
        return self.store
