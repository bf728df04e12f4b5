"""The history archiver: a worker-side loop that keeps closed runs' histories beyond retention.

Temporal's retention deletes closed histories (24 h on the dev server's ``default`` namespace), so
every worker captures the histories of finished runs into the store shortly after they close
(idempotent: racing workers store the same row once). It does nothing while REPLAY_PACK_ENABLED is off.
"""

from __future__ import annotations

import asyncio
import contextlib

import psycopg
import structlog
from temporalio.service import RPCError

from jobforge.errors import JobForgeError
from shared.replay.service import ReplayService

log = structlog.get_logger("jobforge.archiver")


async def archive_histories(service: ReplayService, stop: asyncio.Event, interval: float) -> None:
    while not stop.is_set():
        try:
            captured = await service.capture_pending()
            if captured:
                log.info("histories_captured", count=captured)
        except (JobForgeError, RPCError, psycopg.Error, OSError) as exc:
            log.warning("history_capture_failed", error_type=type(exc).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
