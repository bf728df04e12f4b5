"""The gate's dedupe claim stores the admitted copy in the same statement, under the route key Python computes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobforge.models import EventEnvelope, EventReceipt
from shared.events import route_key, route_prefix
from shared.store import Store
from shared.store import statements as sql

pytestmark = pytest.mark.integration

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: timestamps whose microseconds since the epoch a float holds exactly (below 2^53: until the year 2255), the
#: range any clock gives; beyond it PostgreSQL's float8 of the microseconds rounds before the division does
MOMENTS = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2255, 1, 1),  # noqa: DTZ001 - naive bounds, UTC given below
                       timezones=st.just(UTC))


def _python_micros(moment: datetime) -> str:
    receipt = EventReceipt(tenant_id="t", event_id="e", event_type="x.y", trace_id="tr", duplicate=False,
                           first_seen_at=moment, original_trace_id="tr", payload_hash="")
    return route_key(receipt).removeprefix(route_prefix("t", "x.y", "e"))


def _statement_micros(pg_url: str, moments: list[datetime]) -> list[str]:
    query = (f"SELECT {sql.ROUTE_MICROS.format(ts='m')} FROM unnest(%s::timestamptz[]) WITH ORDINALITY AS u(m, i) "
             "ORDER BY i")
    with psycopg.connect(pg_url.replace("postgresql+psycopg", "postgresql")) as conn:
        return [row[0] for row in conn.execute(query, (moments,)).fetchall()]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(MOMENTS, min_size=1, max_size=300))
def test_the_statement_writes_a_first_sighting_as_route_key_does(pg_url: str, moments: list[datetime]) -> None:
    """ROUTE_MICROS gives the digits route_key gives (Python's float arithmetic, truncated) for any timestamp."""
    assert _statement_micros(pg_url, moments) == [_python_micros(moment) for moment in moments]


def test_the_float_rounding_is_what_is_emulated(pg_url: str) -> None:
    """Some timestamps' route-key digits are not their exact microseconds; the statement gives those digits too."""
    moments = [EPOCH + timedelta(microseconds=n * 123_456_789_011) for n in range(1, 20_000)]  # 1970 to 2048
    off = [m for m in moments if _python_micros(m) != str((m - EPOCH) // timedelta(microseconds=1))]
    assert off, "no timestamp in the sample rounds: the check above could not tell exact from float"
    assert _statement_micros(pg_url, off) == [_python_micros(moment) for moment in off]


@pytest.fixture
async def store(pg_url: str) -> AsyncIterator[Store]:
    store = Store.from_url(pg_url)
    yield store
    await store.close()


async def test_an_original_is_stored_by_its_claim_and_a_duplicate_is_not(store: Store) -> None:
    """The claim's statement stores the original copy under route_key(receipt); a duplicate stores nothing more."""
    event = EventEnvelope(tenant_id="claims", event_id="e-1", event_type="order.paid", payload={"n": 1})
    row = store.triggers.claim_row(event, "trace-1", route_prefix("claims", "order.paid", "e-1"), "tester")
    first = await store.deduper.claim("claims", "order.paid", "e-1", ttl_seconds=60, trace_id="trace-1",
                                      event_row=row)
    again = await store.deduper.claim("claims", "order.paid", "e-1", ttl_seconds=60, trace_id="trace-2",
                                      event_row=row)
    assert not first.duplicate and again.duplicate and again.first_seen_at == first.first_seen_at
    receipt = EventReceipt(tenant_id="claims", event_id="e-1", event_type="order.paid", trace_id="trace-1",
                           duplicate=False, first_seen_at=first.first_seen_at, original_trace_id="trace-1",
                           payload_hash="")
    stored = await store.triggers.event("claims", route_key(receipt))
    assert stored is not None and stored.trace_id == "trace-1" and stored.actor == "tester"
    assert stored.payload == {"n": 1}
