"""Admission's result as a run's history records it: fields at their default are left out, and come back."""

from __future__ import annotations

import json

from temporalio.contrib.pydantic import pydantic_data_converter

from shared.bookkeeping import AdmissionResult

CONVERTER = pydantic_data_converter.payload_converter


def _round_trip(result: AdmissionResult) -> tuple[dict[str, object], AdmissionResult]:
    payload = CONVERTER.to_payloads([result])[0]
    decoded = CONVERTER.from_payloads([payload], [AdmissionResult])[0]
    assert isinstance(decoded, AdmissionResult)
    return json.loads(payload.data), decoded


def test_an_admitted_result_is_recorded_without_its_defaults_and_decodes_whole() -> None:
    """An admission records its verdict, inputs, provenance switch and attributes only; decoding gives it back."""
    result = AdmissionResult(admitted=True, inputs={"n": 1, "empty": ""}, capture_provenance=False,
                             search_attributes={"JobForgeTenant": "acme"})
    recorded, decoded = _round_trip(result)
    assert recorded == {"admitted": True, "inputs": {"n": 1, "empty": ""}, "capture_provenance": False,
                        "search_attributes": {"JobForgeTenant": "acme"}}
    assert decoded == result


def test_a_refusal_keeps_its_reason_and_a_required_field_is_never_left_out() -> None:
    """A refused result keeps its reason and code; ``admitted`` is recorded even when false."""
    result = AdmissionResult(admitted=False, reason="kill switch on", error_code="feature_disabled")
    recorded, decoded = _round_trip(result)
    assert recorded["admitted"] is False and recorded["reason"] == "kill switch on"
    assert "inputs" not in recorded and "capture_provenance" not in recorded
    assert decoded == result


def test_a_result_recorded_whole_still_decodes() -> None:
    """Histories recorded before defaults were left out hold every field; they decode to the same result."""
    whole = {"admitted": True, "reason": "", "error_code": "", "error_details": {}, "inputs": {"n": 1},
             "input_hash": "sha256:" + "0" * 64, "capture_provenance": True, "trace_id": "t-1",
             "search_attributes": {}}
    payload = CONVERTER.to_payloads([whole])[0]
    decoded = CONVERTER.from_payloads([payload], [AdmissionResult])[0]
    assert decoded == AdmissionResult.model_validate(whole)
