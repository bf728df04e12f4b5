"""The catch-all on JobForge's task queues: a workflow type no JobForge worker knows is answered, not left waiting.

Temporal leaves a run of an unknown workflow type waiting for a worker that will never come; on
JobForge's own task queues this dynamic workflow answers it at once: the run fails with
``unknown_workflow_type`` naming the templates, and is recorded and audited as a rejected run of its
tenant when the argument (or the JobForgeTenant attribute) says which.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from temporalio import workflow
from temporalio.common import RawValue

from workflows._job import refuse


@workflow.defn(dynamic=True)
class UnknownWorkflowTypeWorkflow:
    @workflow.run
    async def run(self, args: Sequence[RawValue]) -> None:
        value: Any = None
        if args:
            try:
                value = workflow.payload_converter().from_payload(args[0].payload)
            except Exception:  # an unreadable argument names no tenant; the refusal still stands
                value = None
        await refuse(None, value)
