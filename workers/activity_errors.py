"""The worker's activity interceptor: an activity failing on what retrying cannot change fails for good, typed.

Only workers import it (with Temporal's worker module); the clients of every other process do not need either.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from jobforge.errors import JobForgeError
from shared.outages import as_data_error
from shared.temporal import to_application_error


class _ActivityErrorsInbound(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        try:
            return await super().execute_activity(input)
        except ApplicationError:
            raise
        except JobForgeError as err:
            raise to_application_error(err) from None
        except ValidationError as exc:
            raise ApplicationError(
                f"{activity.info().activity_type}: a value failed validation ({exc.error_count()} error(s)); "
                "retrying cannot change it", type="invalid_data", non_retryable=True) from None
        except Exception as exc:
            if as_data_error(exc):
                raise ApplicationError(
                    f"{activity.info().activity_type}: PostgreSQL refused a value this run carries "
                    f"({type(exc).__name__}); retrying cannot change it", type="store_refused_value",
                    non_retryable=True) from None
            raise


class ActivityErrors(Interceptor):
    """Worker interceptor: an activity failing on what retrying cannot change fails for good, typed.

    A JobForge error becomes its typed failure (retried only if transient); a validation error or a
    value the store refuses (a PostgreSQL data error) is non-retryable, so the run fails with a typed
    error instead of retrying forever. Messages carry the error's class, never the driver's text
    (which can quote the statement's parameters).
    """

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _ActivityErrorsInbound(next)
