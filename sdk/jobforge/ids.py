"""Identifiers: tenant ids, idempotency keys and the workflow ids derived from them (pure)."""

from __future__ import annotations

import re
import uuid

from jobforge.errors import InvalidRequest

_TENANT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9._:-]{1,255}$")
_TRACE = re.compile(r"^[A-Za-z0-9._:/-]{1,128}$")
_API_KEY = re.compile(r"jfk_([0-9a-f]{12})_[A-Za-z0-9_-]{43}")


def check_tenant_id(tenant_id: str) -> str:
    if not _TENANT.fullmatch(tenant_id):
        raise InvalidRequest(
            f"tenant id {tenant_id!r} is invalid: 1-63 chars of lowercase letters, digits, '_' or '-', "
            "starting with a letter or digit", field="tenant_id")
    return tenant_id


def check_idempotency_key(key: str) -> str:
    if not _IDEMPOTENCY_KEY.fullmatch(key):
        raise InvalidRequest(
            "idempotency key must be 1-255 characters of [A-Za-z0-9._:-]", field="idempotency_key")
    return key


def check_trace_id(trace_id: str) -> str:
    if not _TRACE.fullmatch(trace_id):
        raise InvalidRequest("trace id must be 1-128 characters of [A-Za-z0-9._:/-]", field="trace_id")
    return trace_id


def api_key_id(api_key: str) -> str:
    """The key id inside an API key (``jfk_<key id>_<secret>``): what ``autopilot.keys.rotation`` takes as
    ``key_id``; :class:`~jobforge.errors.InvalidRequest` when ``api_key`` is not shaped like one."""
    match = _API_KEY.fullmatch(api_key.strip())
    if match is None:
        raise InvalidRequest("this is not a JobForge API key (jfk_<12 hex>_<43 characters>)", field="api_key")
    return match[1]


def new_trace_id() -> str:
    return uuid.uuid4().hex


def workflow_id_for(tenant_id: str, template_key: str, idempotency_key: str | None) -> str:
    """The workflow id of a job request.

    With an idempotency key the id depends on tenant + key only, so the same key always names the
    same run (and reusing a key for another template is a conflict, not a second run).
    """
    if idempotency_key is not None:
        return f"jobforge/{tenant_id}/idem/{idempotency_key}"
    return f"jobforge/{tenant_id}/{template_key}/{uuid.uuid4().hex}"
