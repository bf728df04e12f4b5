"""Text written through the store is fitted to its columns there (shared/store/columns.py), on a real database:
what is read back is exactly the documented prefix, and a value an exact column cannot hold is refused, typed,
with nothing written."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st

from jobforge.errors import InvalidRequest, UnstorableText
from jobforge.models import RunStatus
from shared.security.audit import AuditFact, Decision
from shared.store import Store
from shared.store.columns import columns

pytestmark = pytest.mark.integration

HOSTILE = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=2500)


@pytest.fixture
async def store(pg_url: str) -> AsyncIterator[Store]:
    store = Store.from_url(pg_url)
    yield store
    await store.close()


def clipped(table: str, column: str, value: str) -> str:
    return columns()[table][column].fit(value)


@examples(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(actor=HOSTILE, template=HOSTILE, trace=HOSTILE, error=HOSTILE)
async def test_a_run_keeps_the_prefix_of_its_free_text(store: Store, actor: str, template: str, trace: str,
                                                       error: str) -> None:
    """A rejected run recorded with hostile actor, template key, trace id and error reads back with each
    clipped to its column (NUL and lone surrogates as U+FFFD), nothing else changed."""
    run_id = uuid.uuid4().hex
    record = await store.record_run(tenant_id="cols", template_key=template, workflow_id=f"wf-{run_id}",
                                    run_id=run_id, status=RunStatus.REJECTED, trace_id=trace, actor=actor,
                                    idempotency_key=None, input_hash="", error=error)
    again = await store.get_run(run_id)
    assert record == again
    assert (again.actor, again.template_key, again.trace_id, again.error) == (
        clipped("runs", "actor", actor), clipped("runs", "template_key", template), clipped("runs", "trace_id", trace),
        clipped("runs", "error", error))


@examples(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(workflow_id=st.tuples(HOSTILE, st.sampled_from(["\x00", "\ud800", "w" * 513]), HOSTILE).map("".join))
async def test_an_identifier_that_does_not_fit_is_refused_and_not_written(store: Store, workflow_id: str) -> None:
    """A workflow id longer than its column, or holding NUL, is refused with a typed error and no run is written."""
    run_id = uuid.uuid4().hex
    with pytest.raises((InvalidRequest, UnstorableText)):
        await store.record_queued(tenant_id="cols", template_key="a.b.c", workflow_id=workflow_id, run_id=run_id,
                                  trace_id="", actor="", idempotency_key=None, input_hash="")
    assert await store.find_by_idempotency_key("cols", run_id) is None
    assert all(r.run_id != run_id for r in await store.list_runs("cols", limit=1000))


@examples(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(actor=HOSTILE, resource=HOSTILE, reason=HOSTILE)
async def test_an_audit_entry_seals_what_its_row_holds(store: Store, actor: str, resource: str, reason: str) -> None:
    """An audit entry with hostile free text is stored clipped (reason to 2,000 characters), the record the
    append returns is the row, and the chain still verifies."""
    tenant = "colsaudit"
    record = await store.audit.append(AuditFact(tenant, actor, "jobs.request", resource, Decision.DENY, reason))
    [newest] = await store.audit.list(tenant, limit=1)
    assert (newest.seq, newest.actor, newest.resource, newest.reason) == (
        record.seq, clipped("audit_log", "actor", actor), clipped("audit_log", "resource", resource),
        clipped("audit_log", "reason", reason))
    assert len(newest.reason) <= 2000
    assert (await store.audit.verify(tenant)).ok
