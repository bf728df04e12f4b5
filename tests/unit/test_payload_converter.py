"""JobForge's payload converter: Temporal's pydantic converter, with one JSON converter per process."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from temporalio.contrib.pydantic import pydantic_data_converter

from jobforge.models import EventEnvelope, JobRun
from shared.bookkeeping import AdmissionResult
from shared.temporal import DATA_CONVERTER, SharedPydanticPayloadConverter

JSON = st.recursive(st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=12)


def test_instances_share_one_json_converter_and_its_type_adapters() -> None:
    """Every instance (the SDK builds a few per run) decodes through the same JSON converter, so a type's
    adapter is built once per process, not once per instance."""
    first, second = SharedPydanticPayloadConverter(), SharedPydanticPayloadConverter()
    assert first.converters[b"json/plain"] is second.converters[b"json/plain"]
    payload = first.to_payloads([JobRun(tenant_id="acme", template_key="t")])[0]
    first.from_payloads([payload], [JobRun])
    hits = first.converters[b"json/plain"]._type_adapter.cache_info().hits  # type: ignore[attr-defined]
    second.from_payloads([payload], [JobRun])
    assert second.converters[b"json/plain"]._type_adapter.cache_info().hits == hits + 1  # type: ignore[attr-defined]
    stock = pydantic_data_converter.payload_converter_class()
    assert [c.encoding for c in first.converters.values()] == [c.encoding for c in stock.converters.values()]  # type: ignore[attr-defined]


@given(inputs=st.dictionaries(st.text(max_size=10), JSON, max_size=5), actor=st.text(max_size=30))
def test_payloads_are_the_stock_pydantic_converters(inputs: dict[str, Any], actor: str) -> None:
    """Whatever the values, the payloads are byte for byte the stock converter's and decode to equal models."""
    values: list[Any] = [JobRun(tenant_id="acme", template_key="t", inputs=inputs, actor=actor),
                         AdmissionResult(admitted=True, inputs=inputs),
                         EventEnvelope(tenant_id="acme", event_id="e", event_type="x.y", payload=inputs,
                                       occurred_at=datetime(2026, 12, 3, tzinfo=UTC)), inputs, actor]
    ours = DATA_CONVERTER.payload_converter.to_payloads(values)
    stock = pydantic_data_converter.payload_converter.to_payloads(values)
    assert ours == stock
    hints: list[Any] = [JobRun, AdmissionResult, EventEnvelope, dict[str, Any], str]
    assert DATA_CONVERTER.payload_converter.from_payloads(ours, hints) == values
