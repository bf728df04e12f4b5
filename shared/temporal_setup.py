"""Idempotent namespace setup on any Temporal cluster: JobForge's search attributes and retention."""

from __future__ import annotations

from datetime import timedelta

from google.protobuf.duration_pb2 import Duration
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.namespace.v1 import NamespaceConfig
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest, UpdateNamespaceRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from shared.temporal import SEARCH_ATTRIBUTES


async def ensure_search_attributes(client: Client) -> list[str]:
    """Register JobForge's Keyword search attributes on the client's namespace; returns those added."""
    namespace = client.namespace
    listed = await client.operator_service.list_search_attributes(ListSearchAttributesRequest(namespace=namespace))
    existing = set(listed.custom_attributes) | set(listed.system_attributes)
    missing = {key.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for key in SEARCH_ATTRIBUTES
               if key.name not in existing}
    if missing:
        try:
            await client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(namespace=namespace, search_attributes=missing))
        except RPCError as exc:
            if exc.status is not RPCStatusCode.ALREADY_EXISTS:  # another process won the race
                raise
    return sorted(missing)


async def ensure_retention(client: Client, retention: timedelta) -> timedelta:
    """Raise the namespace's closed-workflow retention to at least ``retention``; returns the value in force."""
    desc = await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace=client.namespace))
    current = desc.config.workflow_execution_retention_ttl.ToTimedelta()
    if current >= retention:
        return current
    ttl = Duration()
    ttl.FromTimedelta(retention)
    await client.workflow_service.update_namespace(UpdateNamespaceRequest(
        namespace=client.namespace, config=NamespaceConfig(workflow_execution_retention_ttl=ttl)))
    return retention
