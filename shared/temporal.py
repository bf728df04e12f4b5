"""Temporal wiring shared by every process: one ``connect()``, search attributes, error mapping."""

from __future__ import annotations

from typing import Any

from temporalio.client import Client, TLSConfig
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError, FailureError

from shared.errors import ERRORS_BY_CODE, JobForgeError, TemporalUnavailable
from shared.settings import Settings

TENANT = SearchAttributeKey.for_keyword("JobForgeTenant")
TEMPLATE = SearchAttributeKey.for_keyword("JobForgeTemplate")
TRACE = SearchAttributeKey.for_keyword("JobForgeTrace")
SEARCH_ATTRIBUTES = (TENANT, TEMPLATE, TRACE)


def search_attribute_args() -> list[str]:
    """``--search-attribute`` values for ``temporal server start-dev`` / ``operator search-attribute``."""
    return [f"{key.name}=Keyword" for key in SEARCH_ATTRIBUTES]


def run_search_attributes(tenant_id: str, template_key: str, trace_id: str) -> TypedSearchAttributes:
    return TypedSearchAttributes([
        SearchAttributePair(TENANT, tenant_id),
        SearchAttributePair(TEMPLATE, template_key),
        SearchAttributePair(TRACE, trace_id),
    ])


async def connect(settings: Settings, *, address: str | None = None) -> Client:
    """A Temporal client with the pydantic data converter; the only way JobForge connects."""
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
            data_converter=pydantic_data_converter,
            tls=tls,
            api_key=settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None,
        )
    except RuntimeError as exc:
        raise TemporalUnavailable(
            f"cannot reach Temporal at {target} (namespace {settings.temporal_namespace}): "
            f"{str(exc).splitlines()[0][:200]}", address=target) from None


def to_application_error(err: JobForgeError) -> ApplicationError:
    """A JobForge error as a Temporal failure: typed, no stack, retryable only if transient."""
    return ApplicationError(err.message, err.details, type=err.code, non_retryable=not err.retryable)


def from_failure(exc: BaseException) -> JobForgeError | None:
    """The JobForge error carried by a Temporal failure chain, if any."""
    current: BaseException | None = exc
    while current is not None:
        if isinstance(current, ApplicationError) and current.type in ERRORS_BY_CODE:
            cls = ERRORS_BY_CODE[current.type]
            details: dict[str, Any] = current.details[0] if current.details and isinstance(
                current.details[0], dict) else {}
            err = cls.__new__(cls)
            JobForgeError.__init__(err, current.message, **details)
            for key, value in details.items():
                setattr(err, key, value)
            return err
        current = current.cause if isinstance(current, FailureError) else current.__cause__
    return None
