"""Admission's run record (``Store.record_run``): insert, move a queued record on, leave a decided one alone."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from shared.models import RunStatus
from shared.store.store import Store

pytestmark = pytest.mark.integration


@pytest.fixture
async def store(pg_url: str) -> AsyncIterator[Store]:
    s = Store.from_url(pg_url)
    yield s
    await s.close()


def _ids() -> dict[str, str]:
    run_id = uuid.uuid4().hex
    return {"tenant_id": "acme", "template_key": "demo.hello", "workflow_id": f"wf-{run_id}", "run_id": run_id,
            "trace_id": "t" * 32, "actor": "test"}


async def test_a_new_run_is_inserted_and_returned(store: Store) -> None:
    """A run nobody recorded is inserted with admission's verdict, which is what record_run returns."""
    ids = _ids()
    got = await store.record_run(**ids, status=RunStatus.RUNNING, idempotency_key="k1", input_hash="h1")
    assert (got.run_id, got.status, got.idempotency_key, got.input_hash) == (ids["run_id"], RunStatus.RUNNING,
                                                                            "k1", "h1")
    assert await store.get_run(ids["run_id"]) == got


async def test_a_queued_record_is_moved_on_and_a_decided_one_is_left_alone(store: Store) -> None:
    """A queued record takes admission's verdict; a record admission already decided (a retried activity)
    is returned as it stands, not overwritten by the retry's verdict."""
    ids = _ids()
    await store.record_queued(**ids, idempotency_key=None, input_hash="h0")
    moved = await store.record_run(**ids, status=RunStatus.RUNNING, idempotency_key="k2", input_hash="h2")
    assert (moved.status, moved.idempotency_key, moved.input_hash, moved.finished_at) == (
        RunStatus.RUNNING, "k2", "h2", None)
    again = await store.record_run(**ids, status=RunStatus.REJECTED, idempotency_key="k3", input_hash="h3",
                                   error="rate_limited")
    assert again == moved
    assert await store.get_run(ids["run_id"]) == moved


async def test_a_final_verdict_sets_finished_at(store: Store) -> None:
    """A rejection recorded by admission is final: its record has finished_at."""
    got = await store.record_run(**_ids(), status=RunStatus.REJECTED, idempotency_key=None, input_hash="h",
                                 error="rate_limited")
    assert got.status is RunStatus.REJECTED and got.finished_at is not None and got.error == "rate_limited"
