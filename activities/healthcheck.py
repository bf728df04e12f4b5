"""Activities of ``autopilot.jobforge.healthcheck``: look at the database, Temporal and the workers."""

from __future__ import annotations

from temporalio import activity
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest, DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.service import RPCError

from jobforge.errors import StoreUnavailable
from shared.healthcheck import Check, CheckStatus, HealthcheckInputs
from shared.settings import Settings
from shared.store import Store
from shared.store.schema import HEAD_REVISION
from shared.templates import Registry
from shared.temporal import SEARCH_ATTRIBUTES


class HealthcheckActivities:
    def __init__(self, store: Store, client: Client, settings: Settings, registry: Registry) -> None:
        self.store = store
        self.client = client
        self.settings = settings
        self.registry = registry

    @activity.defn(name="healthcheck.check_database")
    async def check_database(self) -> Check:
        """The database answers and its schema is at the migrations' head."""
        try:
            await self.store.ping()
            current = await self.store.schema_revision()
        except StoreUnavailable as err:
            return Check(name="database", status=CheckStatus.FAILED, detail=err.message)
        head = HEAD_REVISION  # Alembic's head (a unit test checks), known without loading Alembic
        if current != head:
            return Check(name="database", status=CheckStatus.FAILED,
                         detail=f"schema at {current or 'nothing'}, migrations at {head}: run `jobforge db upgrade`",
                         data={"revision": current, "head": head})
        return Check(name="database", status=CheckStatus.OK, detail=f"reachable, schema at head {head}",
                     data={"revision": current, "head": head})

    @activity.defn(name="healthcheck.check_temporal")
    async def check_temporal(self) -> Check:
        """The Temporal namespace exists and answers."""
        namespace = self.client.namespace
        try:
            resp = await self.client.workflow_service.describe_namespace(
                DescribeNamespaceRequest(namespace=namespace))
        except RPCError as exc:
            return Check(name="temporal", status=CheckStatus.FAILED,
                         detail=f"namespace {namespace!r}: {exc.message}")
        retention = resp.config.workflow_execution_retention_ttl.ToTimedelta()
        data = {"namespace": namespace, "retention_hours": retention.total_seconds() / 3600}
        try:  # runs carry JobForge's search attributes from their start, and admission sets them
            known = await self.client.operator_service.list_search_attributes(
                ListSearchAttributesRequest(namespace=namespace))
        except RPCError:  # a cloud namespace may not let this key list them; starts would still say so
            known = None
        missing = [key.name for key in SEARCH_ATTRIBUTES
                   if known is not None and key.name not in known.custom_attributes]
        if missing:
            return Check(name="temporal", status=CheckStatus.FAILED,
                         data={**data, "missing_search_attributes": missing},
                         detail=f"namespace {namespace!r} lacks the search attributes {', '.join(missing)}: "
                                "run `jobforge temporal setup`")
        return Check(name="temporal", status=CheckStatus.OK, detail=f"namespace {namespace!r} is registered",
                     data=data)

    @activity.defn(name="healthcheck.check_pollers")
    async def check_pollers(self, inputs: HealthcheckInputs) -> Check:
        """Every task queue has at least one worker polling it for workflow and activity tasks."""
        queues = inputs.task_queues or self.registry.task_queues(self.settings)
        missing: list[str] = []
        counts: dict[str, int] = {}
        for queue in queues:
            for kind, type_ in (("workflow", TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW),
                                ("activity", TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY)):
                resp = await self.client.workflow_service.describe_task_queue(DescribeTaskQueueRequest(
                    namespace=self.client.namespace, task_queue=TaskQueue(name=queue), task_queue_type=type_))
                identities = {poller.identity for poller in resp.pollers}
                counts[f"{queue}/{kind}"] = len(identities)
                if not identities:
                    missing.append(f"{queue} ({kind})")
        if missing:
            return Check(name="workers", status=CheckStatus.FAILED,
                         detail="no worker polls " + ", ".join(missing), data={"pollers": counts})
        return Check(name="workers", status=CheckStatus.OK,
                     detail=f"workers poll {', '.join(queues)}",
                     data={"queues": queues, "pollers": counts})
