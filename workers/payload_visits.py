"""The workflow worker's payload passes over activations and completions: one walk each instead of three.

For every workflow activation the SDK walks the whole activation message three times, each walk handing every
payload sequence to one step (decode the external-storage reference markers, retrieve externally stored
payloads, the codec's decode), and every completion three times the other way (the codec's encode, external
store, encode the reference markers). Each step works on one payload sequence at a time and reads nothing but
that sequence and the command it belongs to, so applying the three steps to each sequence in one walk gives
the same payloads as three walks; the walks themselves (the SDK's generated visitor, a serialization-context
lookup per sequence) were about a sixth of a replayed run's CPU.

:func:`install` has the SDK's workflow worker call :func:`decode_activation` and :func:`encode_completion`,
which make one walk with the three steps composed when the data converter has no external storage (JobForge's
does not: the steps for it then only check that no payload is an external-storage reference, and still raise
the SDK's error if one is). With external storage configured they are the SDK's functions, walks and
concurrency as they are.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence

import structlog
import temporalio.bridge.worker
from temporalio.api.common.v1 import Payload
from temporalio.bridge.proto.workflow_activation import WorkflowActivation
from temporalio.bridge.proto.workflow_completion import WorkflowActivationCompletion
from temporalio.converter import DataConverter

try:  # internals of the SDK (the version range admits releases that may move them: see sdk_matches)
    from temporalio.converter._extstore import StorageOperationMetrics
    from temporalio.worker._command_aware_visitor import CommandAwarePayloadVisitor
except ImportError:
    _INTERNALS_IMPORTED = False
else:
    _INTERNALS_IMPORTED = True

log = structlog.get_logger(__name__)

_stock_decode_activation = temporalio.bridge.worker.decode_activation
_stock_encode_completion = temporalio.bridge.worker.encode_completion

#: what this module calls of the SDK beyond its public API, checked by :func:`sdk_matches` before installing
_CONVERTER_STEPS = ("_decode_reference_payload_sequence", "_external_retrieve_payload_sequence",
                    "_decode_payload_sequence", "_encode_payload_sequence", "_external_store_payload_sequence",
                    "_encode_reference_payload_sequence")


#: a payload step of the data converter: one payload sequence in, the sequence it becomes out
Step = Callable[[Sequence[Payload]], Awaitable[list[Payload]]]


async def _walk(message: WorkflowActivation | WorkflowActivationCompletion, steps: tuple[Step, ...],
                skip_headers: bool) -> StorageOperationMetrics:
    """One walk over ``message``, each payload sequence put through ``steps`` in order (no external storage:
    nothing is stored or retrieved, so the metrics are empty, as the SDK's would be)."""

    async def apply(payloads: Sequence[Payload]) -> list[Payload]:
        for step in steps:
            payloads = await step(payloads)
        return list(payloads)

    await CommandAwarePayloadVisitor(skip_search_attributes=True, skip_headers=skip_headers).visit(
        temporalio.bridge.worker._Visitor(apply), message)
    return StorageOperationMetrics()


async def decode_activation(activation: WorkflowActivation, data_converter: DataConverter, decode_headers: bool,
                            storage_concurrency_limit: int) -> StorageOperationMetrics:
    """The SDK's ``decode_activation``, its three steps applied to each payload sequence in one walk."""
    if data_converter.external_storage is not None:
        return await _stock_decode_activation(activation, data_converter, decode_headers, storage_concurrency_limit)
    return await _walk(activation, (data_converter._decode_reference_payload_sequence,
                                    data_converter._external_retrieve_payload_sequence,
                                    data_converter._decode_payload_sequence), skip_headers=not decode_headers)


async def encode_completion(completion: WorkflowActivationCompletion, data_converter: DataConverter,
                            encode_headers: bool, storage_concurrency_limit: int) -> StorageOperationMetrics:
    """The SDK's ``encode_completion``, its three steps applied to each payload sequence in one walk."""
    if data_converter.external_storage is not None:
        return await _stock_encode_completion(completion, data_converter, encode_headers, storage_concurrency_limit)
    return await _walk(completion, (data_converter._encode_payload_sequence,
                                    data_converter._external_store_payload_sequence,
                                    data_converter._encode_reference_payload_sequence), skip_headers=not encode_headers)


def sdk_matches() -> bool:
    """Whether the installed SDK still has the internals these functions compose, with the signatures they
    were written against (the SDK's version range admits releases that may move them)."""
    if not _INTERNALS_IMPORTED:
        return False
    if not all(callable(getattr(DataConverter, name, None)) for name in _CONVERTER_STEPS):
        return False
    if not callable(getattr(temporalio.bridge.worker, "_Visitor", None)):
        return False
    try:
        decode = list(inspect.signature(_stock_decode_activation).parameters)
        encode = list(inspect.signature(_stock_encode_completion).parameters)
    except (TypeError, ValueError):
        return False
    return decode == ["activation", "data_converter", "decode_headers", "storage_concurrency_limit"] and \
        encode == ["completion", "data_converter", "encode_headers", "storage_concurrency_limit"]


def install() -> bool:
    """Have the SDK's workflow worker (which calls them through ``temporalio.bridge.worker``) use
    :func:`decode_activation` and :func:`encode_completion` (idempotent). With an SDK whose internals no
    longer match (:func:`sdk_matches`), the SDK's own functions stay, the worker logs
    ``payload_visits_stock``, and False is returned."""
    if not sdk_matches():
        log.warning("payload_visits_stock", reason="the Temporal SDK's payload internals differ from the ones "
                    "workers.payload_visits composes: its three walks per activation are kept")
        return False
    setattr(temporalio.bridge.worker, "decode_activation", decode_activation)  # noqa: B010  # the SDK's function replaced
    setattr(temporalio.bridge.worker, "encode_completion", encode_completion)  # noqa: B010  # the SDK's function replaced
    return True
