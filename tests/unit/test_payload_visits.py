"""The worker's one-walk payload passes give the payloads the SDK's three walks give, errors included."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest
import temporalio.bridge.worker
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from temporalio.api.common.v1 import Payload
from temporalio.bridge.proto.workflow_activation import WorkflowActivation
from temporalio.bridge.proto.workflow_completion import WorkflowActivationCompletion
from temporalio.converter import DataConverter, PayloadCodec
from temporalio.converter._extstore import _REFERENCE_MARKER_KEY

from shared.temporal import DATA_CONVERTER
from tests.support.depth import examples
from workers import payload_visits
from workers.payload_visits import decode_activation, encode_completion

SECRET = "ghp_" + "a1B2c3D4e5F6g7H8i9J0" * 2


class CountingCodec(PayloadCodec):
    """Marks every payload it encodes or decodes with how often each was done to it."""

    @staticmethod
    def _mark(payloads: Sequence[Payload], way: str) -> list[Payload]:
        out = []
        for payload in payloads:
            marked = Payload()
            marked.CopyFrom(payload)
            marked.metadata[way] = str(int(payload.metadata.get(way, b"0")) + 1).encode()
            out.append(marked)
        return out

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return self._mark(payloads, "encoded")

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return self._mark(payloads, "decoded")


CONVERTERS = [DATA_CONVERTER, DataConverter.default, DataConverter(payload_codec=CountingCodec())]


def _json(value: object) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(value).encode())


def activation(texts: list[str]) -> WorkflowActivation:
    """An activation with payloads where a run's come: the start's arguments, headers and memo, an activity's
    and a local activity's results, a signal's input."""
    act = WorkflowActivation(run_id="run")
    init = act.jobs.add().initialize_workflow
    init.workflow_type, init.workflow_id = "template", "wf"
    init.arguments.extend(_json({"text": t}) for t in texts)
    init.headers["h"].CopyFrom(_json("header " + SECRET))
    init.memo.fields["input_hash"].CopyFrom(_json("abc"))
    resolve = act.jobs.add().resolve_activity
    resolve.seq = 1
    resolve.result.completed.result.CopyFrom(_json({"index": 3, "note": SECRET}))
    local = act.jobs.add().resolve_activity
    local.seq, local.is_local = 2, True
    local.result.completed.result.CopyFrom(_json({"admitted": True}))
    signal = act.jobs.add().signal_workflow
    signal.signal_name = "route"
    signal.input.extend(_json(t) for t in texts)
    return act


def completion(texts: list[str]) -> WorkflowActivationCompletion:
    """A completion with payloads where a run's go: an activity's and a local activity's arguments and
    headers, the workflow's result."""
    comp = WorkflowActivationCompletion(run_id="run")
    commands = comp.successful.commands
    schedule = commands.add().schedule_activity
    schedule.seq, schedule.activity_type = 1, "bench.noop"
    schedule.arguments.extend(_json({"text": t}) for t in texts)
    schedule.headers["h"].CopyFrom(_json("header " + SECRET))
    local = commands.add().schedule_local_activity
    local.seq, local.activity_type = 2, "jobforge.admit"
    local.arguments.append(_json({"inputs": texts}))
    commands.add().complete_workflow_execution.result.CopyFrom(_json({"done": texts}))
    return comp


TEXTS = st.lists(st.one_of(st.text(max_size=40), st.just(SECRET), st.just(f"token={SECRET}")), max_size=4)


@settings(max_examples=examples(ci=40, deep=300), suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=TEXTS)
@pytest.mark.parametrize("headers", [True, False])
@pytest.mark.parametrize("converter", CONVERTERS)
async def test_one_walk_decodes_and_encodes_as_three(texts: list[str], headers: bool,
                                                     converter: DataConverter) -> None:
    """Activations decode and completions encode (redaction included) to the same messages either way."""
    stock_act, lean_act = activation(texts), activation(texts)
    await payload_visits._stock_decode_activation(stock_act, converter, headers, 1)
    await decode_activation(lean_act, converter, headers, 1)
    assert lean_act == stock_act

    stock_comp, lean_comp = completion(texts), completion(texts)
    await payload_visits._stock_encode_completion(stock_comp, converter, headers, 1)
    metrics = await encode_completion(lean_comp, converter, headers, 1)
    assert lean_comp == stock_comp
    assert metrics.payload_count == 0


async def test_the_redaction_of_an_outgoing_payload_still_happens() -> None:
    """A secret in an activity's argument leaves the worker redacted (the codec's encode runs in the walk)."""
    comp = completion([SECRET])
    await encode_completion(comp, DATA_CONVERTER, True, 1)
    sent = comp.successful.commands[0].schedule_activity.arguments[0].data.decode()
    assert SECRET not in sent and "text" in json.loads(sent)


@pytest.mark.parametrize("converter", CONVERTERS)
async def test_an_externally_stored_payload_without_storage_fails_as_in_the_sdk(converter: DataConverter) -> None:
    """A payload marked as an external-storage reference, with no storage configured, raises the SDK's error."""
    errors = []
    for decode in (payload_visits._stock_decode_activation, decode_activation):
        act = activation(["x"])
        act.jobs[1].resolve_activity.result.completed.result.metadata[_REFERENCE_MARKER_KEY] = b"true"
        with pytest.raises(RuntimeError) as raised:
            await decode(act, converter, True, 1)
        errors.append(str(raised.value))
    assert errors[0] == errors[1] and "TMPRL1105" in errors[0]


def test_install_puts_the_one_walk_passes_where_the_workflow_worker_calls_them() -> None:
    """After install the SDK's module answers with these functions; installing again changes nothing."""
    payload_visits.install()
    payload_visits.install()
    assert temporalio.bridge.worker.decode_activation is decode_activation
    assert temporalio.bridge.worker.encode_completion is encode_completion
    assert payload_visits._stock_decode_activation is not decode_activation


def test_an_sdk_whose_internals_moved_keeps_its_own_walks(monkeypatch: pytest.MonkeyPatch) -> None:
    """A release of the SDK without one of the converter steps composed here: nothing is replaced."""
    monkeypatch.setattr(temporalio.bridge.worker, "decode_activation", payload_visits._stock_decode_activation)
    monkeypatch.setattr(temporalio.bridge.worker, "encode_completion", payload_visits._stock_encode_completion)
    assert payload_visits.sdk_matches()
    monkeypatch.setattr(payload_visits, "_CONVERTER_STEPS", (*payload_visits._CONVERTER_STEPS, "_moved_away"))
    assert not payload_visits.sdk_matches()
    assert payload_visits.install() is False
    assert temporalio.bridge.worker.decode_activation is payload_visits._stock_decode_activation
    assert temporalio.bridge.worker.encode_completion is payload_visits._stock_encode_completion
