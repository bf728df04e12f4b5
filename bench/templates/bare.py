"""A bare Temporal workflow for ``bench/events.py``'s like-for-like baseline (no JobForge code at all).

``bench.bare`` runs one activity, ``bench.bare.mark``, which records the wall-clock instant it
started in :data:`STARTED` (the benchmark's worker runs in the benchmark's process).
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from temporalio import activity, workflow

STARTED: dict[str, float] = {}
_waiting: set[str] = set()
_all_started = asyncio.Event()


@activity.defn(name="bench.bare.mark")
async def mark(key: str) -> None:
    STARTED[key] = time.time()
    _waiting.discard(key)
    if not _waiting:
        _all_started.set()


async def wait_started(keys: list[str]) -> None:
    """Return once every run named in ``keys`` has started its activity."""
    _waiting.update(k for k in keys if k not in STARTED)
    if _waiting:
        _all_started.clear()
        await _all_started.wait()


@workflow.defn(name="bench.bare")
class BareWorkflow:
    @workflow.run
    async def run(self, key: str) -> None:
        await workflow.execute_activity(mark, key, start_to_close_timeout=timedelta(seconds=30))
