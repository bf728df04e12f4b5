"""Temporal wiring shared by every process: one ``connect()``, search attributes, error mapping."""

from __future__ import annotations

from collections.abc import Sequence

from temporalio.api.common.v1 import Payload
from temporalio.api.failure.v1 import Failure
from temporalio.client import Client, TLSConfig
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes
from temporalio.contrib.pydantic import PydanticJSONPlainPayloadConverter, PydanticPayloadConverter
from temporalio.converter import (
    CompositePayloadConverter,
    DataConverter,
    DefaultFailureConverter,
    DefaultPayloadConverter,
    JSONPlainPayloadConverter,
    PayloadCodec,
    PayloadConverter,
)
from temporalio.exceptions import ApplicationError

from jobforge.errors import JobForgeError, TemporalUnavailable
from shared import metrics, tracing
from shared.search_attributes import TEMPLATE_ATTRIBUTE, TENANT_ATTRIBUTE, TRACE_ATTRIBUTE
from shared.security.redaction import redact, redact_text
from shared.settings import Settings

TENANT = SearchAttributeKey.for_keyword(TENANT_ATTRIBUTE)
TEMPLATE = SearchAttributeKey.for_keyword(TEMPLATE_ATTRIBUTE)
TRACE = SearchAttributeKey.for_keyword(TRACE_ATTRIBUTE)
SEARCH_ATTRIBUTES = (TENANT, TEMPLATE, TRACE)


def run_search_attributes(tenant_id: str, template_key: str, trace_id: str) -> TypedSearchAttributes:
    return TypedSearchAttributes([
        SearchAttributePair(TENANT, tenant_id),
        SearchAttributePair(TEMPLATE, template_key),
        SearchAttributePair(TRACE, trace_id),
    ])


class SafeFailureConverter(DefaultFailureConverter):
    """Failures leave a process without a stack trace and with secrets redacted from their messages."""

    def to_failure(self, exception: BaseException, payload_converter: PayloadConverter, failure: Failure) -> None:
        super().to_failure(exception, payload_converter, failure)
        current: Failure | None = failure
        while current is not None:
            current.stack_trace = ""
            current.message = redact_text(current.message)
            current = current.cause if current.HasField("cause") else None


class RedactingCodec(PayloadCodec):
    """The last line of defence: secret-looking values never reach Temporal's history.

    JSON payloads are redacted on their way out by the one redaction engine, which keeps JSON valid
    (so payloads decode without this codec, e.g. in a replay bundle). Values under the payload's own
    keys are JobForge's typed fields and are left to the gate (secrets in inputs are refused before a
    run starts); secrets inside strings, including JSON a step printed, are redacted.
    """

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out: list[Payload] = []
        for payload in payloads:
            if payload.metadata.get("encoding") == b"json/plain":
                text = payload.data.decode("utf-8", errors="replace")
                cleaned = redact_text(text, json_keys=False)
                if cleaned != text:
                    payload = Payload(metadata=dict(payload.metadata), data=cleaned.encode())
            out.append(payload)
        return out

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return list(payloads)


#: the pydantic JSON converter every :class:`SharedPydanticPayloadConverter` uses (its type adapters: up to
#: 256, the hot ones being the models of ``jobforge.models`` and the templates' passed-through models)
_PYDANTIC_JSON = PydanticJSONPlainPayloadConverter(max_cached_type_adapters=256)


class SharedPydanticPayloadConverter(PydanticPayloadConverter):
    """Temporal's pydantic payload converter, whose JSON converter (and its cache of pydantic type adapters)
    is one per process.

    The SDK builds a payload converter for every workflow instance and every activation's command-aware
    converter, a few per run; the stock class builds a fresh JSON converter each time, with an empty cache,
    so every run built a ``TypeAdapter`` for each type it decoded (its argument, each activity's result)
    again. The JSON converter holds nothing but that cache, so sharing it changes no payload.
    """

    def __init__(self) -> None:
        CompositePayloadConverter.__init__(self, *(
            _PYDANTIC_JSON if isinstance(c, JSONPlainPayloadConverter) else c
            for c in DefaultPayloadConverter.default_encoding_payload_converters))


#: every JobForge process converts with this: pydantic models, safe failures, redacted payloads
DATA_CONVERTER: DataConverter = DataConverter(
    payload_converter_class=SharedPydanticPayloadConverter, payload_codec=RedactingCodec(),
    failure_converter_class=SafeFailureConverter)


async def connect(settings: Settings, *, address: str | None = None) -> Client:
    """A Temporal client with the pydantic data converter; the only way JobForge connects.

    It runs on this process's metrics runtime (:mod:`shared.metrics`) and carries the tracing
    interceptor when tracing is on (:mod:`shared.tracing`); workers built on it inherit both.
    """
    tls: TLSConfig | bool = False
    if settings.temporal_tls or settings.temporal_tls_cert:
        tls = TLSConfig(
            server_root_ca_cert=settings.temporal_tls_ca.read_bytes() if settings.temporal_tls_ca else None,
            client_cert=settings.temporal_tls_cert.read_bytes() if settings.temporal_tls_cert else None,
            client_private_key=settings.temporal_tls_key.read_bytes() if settings.temporal_tls_key else None,
        )
    target = address or settings.temporal_address
    try:
        return await Client.connect(
            target,
            namespace=settings.temporal_namespace,
            data_converter=DATA_CONVERTER,
            tls=tls,
            api_key=settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None,
            runtime=metrics.temporal_runtime(), interceptors=tracing.interceptors(),
        )
    except RuntimeError as exc:
        raise TemporalUnavailable(
            f"cannot reach Temporal at {target} (namespace {settings.temporal_namespace}): "
            f"{str(exc).splitlines()[0][:200]}", address=target) from None


def to_application_error(err: JobForgeError) -> ApplicationError:
    """A JobForge error as a Temporal failure: typed, no stack, retryable only if transient."""
    return ApplicationError(redact_text(err.message), redact(err.details), type=err.code,
                            non_retryable=not err.retryable)
