"""Temporal workers run in the test's own process for the length of a block."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

from temporalio.worker import Worker


@contextlib.asynccontextmanager
async def running(workers: Sequence[Worker]) -> AsyncIterator[None]:
    """``workers`` polling their task queues inside the block; shut down (in-flight tasks finished) after it."""
    tasks = [asyncio.ensure_future(w.run()) for w in workers]
    try:
        yield None
    finally:
        await asyncio.gather(*(w.shutdown() for w in workers))
        await asyncio.gather(*tasks, return_exceptions=True)
