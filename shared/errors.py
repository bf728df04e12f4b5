"""Every failure JobForge reports, one small class each.

Each class's docstring is its default message. ``code`` is a stable, machine-readable name used
as the Temporal ``ApplicationError`` type, the CLI's error line and (later) the HTTP problem type.
Messages never carry stacks or secrets: they are built from the fields given here only.
"""

from __future__ import annotations

from typing import Any, ClassVar


class JobForgeError(Exception):
    """JobForge failed."""

    code: ClassVar[str] = "jobforge_error"
    #: permanent errors are not retried by Temporal
    retryable: ClassVar[bool] = False

    def __init__(self, message: str | None = None, **details: Any) -> None:
        self.message = message or (self.__doc__ or self.code).strip()
        self.details = details
        super().__init__(self.message)

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}


class FeatureDisabled(JobForgeError):
    """This feature is turned off."""

    code = "feature_disabled"

    def __init__(self, flag: str) -> None:
        super().__init__(f"feature disabled: {flag} is off (turn it on with `jobforge flags set {flag} on`)",
                         flag=flag)
        self.flag = flag


class TemplateNotFound(JobForgeError):
    """No job template is registered under this key."""

    code = "template_not_found"

    def __init__(self, key: str) -> None:
        super().__init__(f"no job template is registered under {key!r}", template_key=key)


class InvalidInputs(JobForgeError):
    """The job's inputs do not match its template's input model."""

    code = "invalid_inputs"


class InvalidRequest(JobForgeError):
    """The request is malformed."""

    code = "invalid_request"


class UnknownFlag(JobForgeError):
    """No feature flag has this name."""

    code = "unknown_flag"

    def __init__(self, name: str) -> None:
        super().__init__(f"no feature flag is named {name!r}", flag=name)


class IdempotencyConflict(JobForgeError):
    """This idempotency key was already used with different inputs."""

    code = "idempotency_conflict"


class RunNotFound(JobForgeError):
    """No run has this id."""

    code = "run_not_found"

    def __init__(self, run_id: str) -> None:
        super().__init__(f"no run {run_id!r}", run_id=run_id)


class RunFailed(JobForgeError):
    """The run failed."""

    code = "run_failed"


class StoreUnavailable(JobForgeError):
    """The JobForge database cannot be reached."""

    code = "store_unavailable"
    retryable = True


class TemporalUnavailable(JobForgeError):
    """The Temporal server cannot be reached."""

    code = "temporal_unavailable"
    retryable = True


class PortInUse(JobForgeError):
    """A port JobForge needs is already in use."""

    code = "port_in_use"

    def __init__(self, what: str, port: int, host: str = "127.0.0.1") -> None:
        super().__init__(
            f"port {port} on {host} ({what}) is already in use; choose another with the matching "
            f"--*-port option or stop what holds it",
            what=what, port=port,
        )


class StackNotRunning(JobForgeError):
    """No JobForge dev stack is running here."""

    code = "stack_not_running"


class StackStartFailed(JobForgeError):
    """A component of the dev stack failed to start."""

    code = "stack_start_failed"


ERRORS_BY_CODE: dict[str, type[JobForgeError]] = {
    cls.code: cls
    for cls in (JobForgeError, FeatureDisabled, TemplateNotFound, InvalidInputs, InvalidRequest, UnknownFlag,
                IdempotencyConflict, RunNotFound, RunFailed, StoreUnavailable, TemporalUnavailable, PortInUse,
                StackNotRunning, StackStartFailed)
}
