"""Inputs up to the payload limits do not stall workers: a run carrying about 1 MB of input built to
pile up work (strings dense with redaction keywords, token prefixes) finishes with every workflow
and activity task done at its first attempt, in about the time the same bytes of plain text take."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType

from shared.flags import Flag
from shared.settings import Settings
from workers.runtime import Runtime

pytestmark = pytest.mark.integration

CARRY = "testing.jobforge.carry"
#: ten strings just under max_string (100,000): about 990 KB of JSON, under max_bytes (1 MiB)
CHUNK = 99_000


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.replace(template_modules=["tests.support.security_templates"])


def chunks(piece: str, count: int = 10) -> list[str]:
    return [(piece * (CHUNK // len(piece) + 1))[:CHUNK]] * count


INPUTS = {
    "small": ["x"],
    "plain": chunks("the quick brown fox jumps over the lazy dog "),
    "keyword_dense": chunks("key"),
    "token_prefixes": chunks("eyJ- AKIA ghp_ xoxb- sk_live_ -----BEGIN "),
    "separators": chunks("key=: "),
}


async def run_and_time(runtime: Runtime, tenant: str, pieces: list[str]) -> tuple[float, Any]:
    """Request a carry run, wait for its result; (seconds, the run's Temporal history)."""
    assert runtime.temporal is not None
    client = runtime.client()
    started = time.perf_counter()
    handle = await client.request_job(tenant, CARRY, {"chunks": pieces})
    result = await client.result(handle)
    seconds = time.perf_counter() - started
    assert result.model_dump()["chars"] == sum(map(len, pieces))
    return seconds, await runtime.temporal.get_workflow_handle(handle.workflow_id).fetch_history()


def retried_or_timed_out(history: Any) -> list[str]:
    """Every workflow or activity task in ``history`` that timed out, failed or needed a second attempt."""
    bad = {EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT, EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED,
           EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT, EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED}
    found = [EventType.Name(e.event_type) for e in history.events if e.event_type in bad]
    found += [f"workflow task attempt {e.workflow_task_scheduled_event_attributes.attempt}" for e in history.events
              if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED
              and e.workflow_task_scheduled_event_attributes.attempt > 1]
    found += [f"activity attempt {e.activity_task_started_event_attributes.attempt}" for e in history.events
              if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
              and e.activity_task_started_event_attributes.attempt > 1]
    return found


async def test_near_limit_inputs_run_at_the_first_attempt(runtime: Runtime, worker: None,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """With validation, audit and provenance capture on, each near-limit input passes the gate and
    its run finishes without a timed-out, failed or retried task; the hostile ones take at most a
    small multiple of the plain text of the same size (timed in the same test, interleaved)."""
    for flag in (Flag.SECURITY_VALIDATION, Flag.AUDIT_LOGGING, Flag.REPLAY_PACK):
        monkeypatch.setenv(flag.value, "1")
    tenant = f"large-{uuid.uuid4().hex[:6]}"
    await runtime.gate.tenants.create_tenant(tenant)
    await run_and_time(runtime, tenant, INPUTS["small"])  # warm up
    seconds: dict[str, list[float]] = {name: [] for name in INPUTS}
    for _ in range(2):
        for name, pieces in INPUTS.items():
            took, history = await run_and_time(runtime, tenant, pieces)
            assert retried_or_timed_out(history) == [], name
            seconds[name].append(took)
    best = {name: min(times) for name, times in seconds.items()}
    for name in ("keyword_dense", "token_prefixes", "separators"):
        assert best[name] < 3 * best["plain"] + 0.5, best
