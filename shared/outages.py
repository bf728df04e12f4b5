"""What an infrastructure failure means to a caller: the store or Temporal is away (retry later).

Every surface answers an outage in its own format from the same classification: the HTTP API with a
problem+json 503 and ``Retry-After``, the CLI with one line and exit 2, the SDK with a typed,
retryable :class:`~jobforge.errors.JobForgeError`.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from jobforge.errors import JobForgeError, StoreUnavailable, TemporalUnavailable

P = ParamSpec("P")
R = TypeVar("R")

#: gRPC statuses of a Temporal server that is down, restarting or overloaded
_TEMPORAL_AWAY = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED", "CANCELLED",
                            "UNKNOWN"})


def as_outage(exc: BaseException, depth: int = 0) -> JobForgeError | None:
    """The typed, retryable error ``exc`` (or what caused it) stands for when it says the store or
    Temporal is away; else None.

    The exception's own text is not carried over: driver messages can quote statement parameters.
    """
    if isinstance(exc, JobForgeError):
        return exc if exc.retryable else None
    from shared.store.store import unreachable

    if unreachable(exc):
        return StoreUnavailable("the JobForge database cannot be reached right now; retry shortly")
    from shared.store.fast import PoolTimeout

    if isinstance(exc, PoolTimeout):
        return StoreUnavailable("the JobForge database is too busy to take this request; retry shortly")
    from temporalio.service import RPCError

    if isinstance(exc, RPCError) and exc.status.name in _TEMPORAL_AWAY:
        return TemporalUnavailable("Temporal cannot be reached right now; retry shortly")
    cause = exc.__cause__ or exc.__context__
    if cause is not None and depth < 5:
        return as_outage(cause, depth + 1)
    return None


def as_data_error(exc: BaseException) -> bool:
    """Whether ``exc`` is the store refusing a value (NUL in text, a bad JSON value): the request's fault."""
    import psycopg

    return isinstance(exc, psycopg.DataError)


def typed_outages(call: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """An SDK method that raises the typed, retryable error of an outage instead of the driver's or
    gRPC's own exception (anything else passes through as it was)."""
    @functools.wraps(call)
    async def typed(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await call(*args, **kwargs)
        except JobForgeError:
            raise
        except Exception as exc:
            outage = as_outage(exc)
            if outage is None:
                raise
            raise outage from None
    return typed
