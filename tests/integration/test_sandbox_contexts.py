"""The worker's sandbox runner answers a payload's serialization context as Temporal's stock runner does."""

from __future__ import annotations

import collections
import dataclasses
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest
from temporalio import activity, workflow
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import PayloadCodec, SerializationContext, WithSerializationContext
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from workers.sandbox import CompiledSandboxRunner

pytestmark = pytest.mark.integration

SEEN: list[str] = []


@activity.defn(name="sandbox.contexts.echo")
async def echo(value: str) -> str:
    return value


@workflow.defn(name="sandbox.contexts")
class ContextsWorkflow:
    @workflow.run
    async def run(self, value: str) -> str:
        first = await workflow.execute_activity(echo, value, start_to_close_timeout=timedelta(seconds=30))
        second = await workflow.execute_local_activity(echo, first, start_to_close_timeout=timedelta(seconds=30))
        return second


class RecordingCodec(PayloadCodec, WithSerializationContext):
    """Records the context of every payload it encodes or decodes (minus the run's id and task queue)."""

    def __init__(self, context: SerializationContext | None = None) -> None:
        self.context = context

    def with_context(self, context: SerializationContext) -> RecordingCodec:
        return RecordingCodec(context)

    def _record(self, way: str, payloads: Sequence[Payload]) -> None:
        fields = dataclasses.asdict(self.context) if dataclasses.is_dataclass(self.context) else {}  # type: ignore[arg-type]
        fields.pop("workflow_id", None)
        fields.pop("activity_task_queue", None)
        SEEN.extend(f"{way} {type(self.context).__name__} {sorted(fields.items())}" for _ in payloads)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        self._record("encode", payloads)
        return list(payloads)

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        self._record("decode", payloads)
        return list(payloads)


async def contexts(env: WorkflowEnvironment, runner: Any) -> collections.Counter[str]:
    """The contexts the codec saw over one run on ``runner`` (worker and starter sharing the client)."""
    client = Client(**{**env.client.config(), "data_converter": dataclasses.replace(
        pydantic_data_converter, payload_codec=RecordingCodec())})
    queue = f"sandbox-contexts-{uuid.uuid4().hex[:8]}"
    SEEN.clear()
    async with Worker(client, task_queue=queue, workflows=[ContextsWorkflow], activities=[echo],
                      workflow_runner=runner):
        assert await client.execute_workflow(ContextsWorkflow.run, "hello", id=f"ctx-{uuid.uuid4().hex}",
                                             task_queue=queue) == "hello"
    return collections.Counter(SEEN)


async def test_payload_contexts_match_the_stock_sandbox(temporal_env: WorkflowEnvironment) -> None:
    """Over a run with an activity and a local activity, the codec sees the same serialization contexts
    (workflow's and each activity's, encode and decode) under CompiledSandboxRunner as under Temporal's
    SandboxedWorkflowRunner."""
    stock = await contexts(temporal_env, SandboxedWorkflowRunner())
    ours = await contexts(temporal_env, CompiledSandboxRunner())
    assert any("ActivitySerializationContext" in seen for seen in stock), stock
    assert ours == stock
