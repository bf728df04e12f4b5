"""The JobForge SDK: the HTTP client and the wire contract shared with the server.

``from jobforge import JobForgeClient`` talks to ``jobforge-api`` with a tenant API key. The request and
receipt models and run records are in :mod:`jobforge.models`, the typed errors and their codes in
:mod:`jobforge.errors`; the server imports both from here.

The names below load their module when first used, so importing :mod:`jobforge.errors` alone (as the
server's short CLI commands do) does not load httpx or pydantic's models.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobforge.client import JobForgeClient
    from jobforge.errors import JobForgeError, typed_error
    from jobforge.models import ArtifactRecord, EventEnvelope, EventReceipt, RunHandleInfo, RunRecord, RunStatus

_HOME = {
    "JobForgeClient": "jobforge.client",
    "JobForgeError": "jobforge.errors",
    "typed_error": "jobforge.errors",
    "ArtifactRecord": "jobforge.models",
    "EventEnvelope": "jobforge.models",
    "EventReceipt": "jobforge.models",
    "RunHandleInfo": "jobforge.models",
    "RunRecord": "jobforge.models",
    "RunStatus": "jobforge.models",
}

__all__ = [
    "ArtifactRecord",
    "EventEnvelope",
    "EventReceipt",
    "JobForgeClient",
    "JobForgeError",
    "RunHandleInfo",
    "RunRecord",
    "RunStatus",
    "typed_error",
]


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module 'jobforge' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
