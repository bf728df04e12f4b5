"""Admission's run record (``Store.record_run``): insert, move a queued record on, leave a decided one alone."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from jobforge.errors import RunNotFound
from jobforge.models import RunStatus
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


async def test_a_receipt_admits_one_run_and_records_it_with_its_use(store: Store) -> None:
    """Admission on a receipt records the run and the receipt's use in one statement: the run holding the
    receipt gets its record (a queued one moved on, a retry finding the same record); another run presenting
    the same receipt gets None and no record, and the receipt stays bound to the first."""
    first, other = _ids(), _ids()
    other["workflow_id"] = first["workflow_id"]  # a later run of the same workflow id
    jti, expires = uuid.uuid4().hex, datetime.now(UTC) + timedelta(minutes=5)
    await store.record_queued(**first, idempotency_key=None, input_hash="h0")
    got = await store.record_admitted_with_receipt(**first, idempotency_key="k1", input_hash="h1",
                                                   receipt_jti=jti, receipt_expires_at=expires)
    assert got is not None
    assert (got.run_id, got.status, got.idempotency_key, got.input_hash, got.finished_at) == (
        first["run_id"], RunStatus.RUNNING, "k1", "h1", None)
    retried = await store.record_admitted_with_receipt(**first, idempotency_key="k1", input_hash="h1",
                                                       receipt_jti=jti, receipt_expires_at=expires)
    assert retried == got
    refused = await store.record_admitted_with_receipt(**other, idempotency_key="k1", input_hash="h1",
                                                       receipt_jti=jti, receipt_expires_at=expires)
    assert refused is None
    with pytest.raises(RunNotFound):
        await store.get_run(other["run_id"])
    assert await store.get_run(first["run_id"]) == got


async def test_concurrent_runs_on_one_receipt_admit_exactly_one(store: Store) -> None:
    """Twenty runs presenting one receipt at once: exactly one is recorded as admitted on it."""
    jti, expires = uuid.uuid4().hex, datetime.now(UTC) + timedelta(minutes=5)
    runs = [_ids() for _ in range(20)]
    got = await asyncio.gather(*(store.record_admitted_with_receipt(
        **ids, idempotency_key=None, input_hash="h", receipt_jti=jti, receipt_expires_at=expires) for ids in runs))
    admitted = [record for record in got if record is not None]
    assert len(admitted) == 1 and admitted[0].status is RunStatus.RUNNING
