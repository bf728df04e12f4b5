"""The JobForge SDK: the HTTP client and the wire contract shared with the server.

``from jobforge import JobForgeClient`` talks to ``jobforge-api`` with a tenant API key. The request and
receipt models and run records are in :mod:`jobforge.models`, the typed errors and their codes in
:mod:`jobforge.errors`; the server imports both from here.
"""

from jobforge.client import JobForgeClient
from jobforge.errors import JobForgeError, typed_error
from jobforge.models import ArtifactRecord, EventEnvelope, EventReceipt, RunHandleInfo, RunRecord, RunStatus

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
