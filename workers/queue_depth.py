"""The queue-depth watcher: a worker-side loop that refreshes the backlog gauge of the worker's task queues.

Every ``JOBFORGE_QUEUE_DEPTH_INTERVAL_SECONDS`` it asks Temporal (``DescribeTaskQueue`` with
``report_stats``) for the approximate backlog of workflow and activity tasks of each task queue the
worker serves, and sets ``jobforge_task_queue_backlog{task_queue, kind}``. Every worker of a queue
reports the same figure: aggregate with ``max``, not ``sum``. It runs only while metrics are served.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import structlog
from temporalio.api.enums.v1 import TaskQueueKind, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.service import RPCError

from shared import metrics

log = structlog.get_logger("jobforge.queue_depth")

KINDS = (("workflow", TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW), ("activity", TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY))


@dataclass(frozen=True, slots=True)
class Backlog:
    task_queue: str
    #: ``workflow`` or ``activity`` tasks
    kind: str
    count: int


async def describe_backlog(client: Client, task_queue: str) -> list[Backlog]:
    """The approximate backlog of a task queue's workflow and activity tasks, as Temporal reports it now."""
    out: list[Backlog] = []
    for kind, queue_type in KINDS:
        queue = TaskQueue(name=task_queue, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL)
        response = await client.workflow_service.describe_task_queue(DescribeTaskQueueRequest(
            namespace=client.namespace, task_queue=queue, task_queue_type=queue_type, report_stats=True))
        out.append(Backlog(task_queue, kind, int(response.stats.approximate_backlog_count)))
    return out


async def watch_queue_depth(client: Client, task_queues: Sequence[str], stop: asyncio.Event,
                            interval: float) -> None:
    """Refresh the backlog gauge of ``task_queues`` every ``interval`` seconds until ``stop`` is set."""
    while not stop.is_set():
        try:
            for queue in task_queues:
                for backlog in await describe_backlog(client, queue):
                    metrics.queue_backlog(backlog.task_queue, backlog.kind, backlog.count)
        except RPCError as exc:
            log.warning("queue_depth_failed", error_type=type(exc).__name__, status=exc.status.name)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
