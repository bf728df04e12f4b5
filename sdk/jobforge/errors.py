"""Every failure JobForge reports, one small class each, registered where it is declared.

Each class's docstring is its default message. ``code`` is a stable, machine-readable name used
as the Temporal ``ApplicationError`` type, the CLI's error line and the HTTP problem type; ``status``
is the HTTP status of its problem+json answer; ``retryable`` says whether Temporal retries it.
Every class declares ``code`` and ``status`` itself: defining the class registers it in
:data:`ERRORS_BY_CODE` (a missing declaration or a code already taken fails at import), and
:data:`HTTP_STATUS` and :func:`typed_error` are derived from that one registry.
Messages never carry stacks or secrets: they are built from the fields given here only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

#: every error class by its code, filled as each class is defined
ERRORS_BY_CODE: dict[str, type[JobForgeError]] = {}
#: the HTTP status of each error code (problem+json answers), derived from the registry
HTTP_STATUS: dict[str, int] = {}


def _register(cls: type[JobForgeError]) -> None:
    for name in ("code", "status"):
        if name not in vars(cls):
            raise TypeError(f"{cls.__qualname__} must declare its own {name} (see sdk/jobforge/errors.py)")
    if not (isinstance(cls.status, int) and 400 <= cls.status <= 599):
        raise TypeError(f"{cls.__qualname__}.status must be an HTTP error status, not {cls.status!r}")
    taken = ERRORS_BY_CODE.get(cls.code)
    if taken is not None and (taken.__module__, taken.__qualname__) != (cls.__module__, cls.__qualname__):
        raise TypeError(f"error code {cls.code!r} of {cls.__qualname__} is taken by {taken.__qualname__}")
    ERRORS_BY_CODE[cls.code] = cls
    HTTP_STATUS[cls.code] = cls.status


class JobForgeError(Exception):
    """JobForge failed."""

    code: ClassVar[str] = "jobforge_error"
    #: the HTTP status of the problem+json answer
    status: ClassVar[int] = 500
    #: permanent errors are not retried by Temporal
    retryable: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _register(cls)

    def __init__(self, message: str | None = None, **details: Any) -> None:
        self.message = message or (self.__doc__ or self.code).strip()
        self.details = details
        super().__init__(self.message)


_register(JobForgeError)


def typed_error(source: BaseException | Mapping[str, Any] | None) -> JobForgeError | None:
    """The typed error a Temporal failure chain or a problem+json body carries, or None if it carries none.

    ``source`` is an exception whose chain (Temporal ``cause``, else ``__cause__``) may hold an
    ``ApplicationError`` whose type is a registered code (details: its first detail, a dict), or a
    decoded problem+json body (``code``, ``detail``, ``details``). Both SDK transports and the CLI
    rebuild errors with this one function, so a code means the same class whichever way it travelled.
    """
    if source is None:
        return None
    if isinstance(source, Mapping):
        details = source.get("details")
        return _rebuild(str(source.get("code", "")), str(source.get("detail") or ""),
                        details if isinstance(details, dict) else {})
    try:
        from temporalio.exceptions import ApplicationError, FailureError
    except ImportError:  # the HTTP-only SDK: no Temporal failure can reach here
        return None
    current: BaseException | None = source
    while current is not None:
        if isinstance(current, ApplicationError) and current.type in ERRORS_BY_CODE:
            first = current.details[0] if current.details else None
            return _rebuild(current.type, current.message, first if isinstance(first, dict) else {})
        current = current.cause if isinstance(current, FailureError) else current.__cause__
    return None


def _rebuild(code: str, message: str, details: dict[str, Any]) -> JobForgeError | None:
    cls = ERRORS_BY_CODE.get(code)
    if cls is None:
        return None
    err = cls.__new__(cls)  # the class's own __init__ builds a message; this one is already built
    JobForgeError.__init__(err, message or None, **details)
    for key, value in details.items():
        setattr(err, key, value)
    return err


class FeatureDisabled(JobForgeError):
    """This feature is turned off."""

    code = "feature_disabled"
    status = 403

    def __init__(self, flag: str, message: str | None = None, *, source: str = "", where: str = "") -> None:
        super().__init__(message or f"feature disabled: {flag} is off (turn it on with `jobforge flags set {flag} "
                         "on`)", flag=flag, source=source, where=where)
        self.flag = flag
        #: where the value came from (``default``, ``env``, ``store``) and whose reading it was
        self.source = source
        self.where = where


class TemplateNotFound(JobForgeError):
    """No job template is registered under this key."""

    code = "template_not_found"
    status = 404

    def __init__(self, key: str) -> None:
        super().__init__(f"no job template is registered under {key!r}", template_key=key)


class InvalidInputs(JobForgeError):
    """The job's inputs do not match its template's input model."""

    code = "invalid_inputs"
    status = 422


class InvalidRequest(JobForgeError):
    """The request is malformed."""

    code = "invalid_request"
    status = 400


class UnknownFlag(JobForgeError):
    """No feature flag has this name."""

    code = "unknown_flag"
    status = 400

    def __init__(self, name: str) -> None:
        super().__init__(f"no feature flag is named {name!r}", flag=name)


class IdempotencyConflict(JobForgeError):
    """This idempotency key was already used with different inputs."""

    code = "idempotency_conflict"
    status = 422


class RunNotFound(JobForgeError):
    """No run has this id."""

    code = "run_not_found"
    status = 404

    def __init__(self, run_id: str) -> None:
        super().__init__(f"no run {run_id!r}", run_id=run_id)


class RunFailed(JobForgeError):
    """The run failed."""

    code = "run_failed"
    status = 400


class StoreUnavailable(JobForgeError):
    """The JobForge database cannot be reached."""

    code = "store_unavailable"
    status = 503
    retryable = True


class TemporalUnavailable(JobForgeError):
    """The Temporal server cannot be reached."""

    code = "temporal_unavailable"
    status = 503
    retryable = True


class PortInUse(JobForgeError):
    """A port JobForge needs is already in use."""

    code = "port_in_use"
    status = 400

    def __init__(self, what: str, port: int, host: str = "127.0.0.1") -> None:
        super().__init__(
            f"port {port} on {host} ({what}) is already in use; choose another with the matching "
            f"--*-port option or stop what holds it",
            what=what, port=port,
        )


class StackNotRunning(JobForgeError):
    """No JobForge dev stack is running here."""

    code = "stack_not_running"
    status = 400


class StackStartFailed(JobForgeError):
    """A component of the dev stack failed to start."""

    code = "stack_start_failed"
    status = 400


class RepoPathRefused(JobForgeError):
    """This repository path may not be verified here."""

    code = "repo_path_refused"
    status = 400


class RepoCheckoutFailed(JobForgeError):
    """The repository could not be cloned or checked out."""

    code = "repo_checkout_failed"
    status = 400


class VerifyConfigInvalid(JobForgeError):
    """The repository's verify configuration is invalid."""

    code = "verify_config_invalid"
    status = 400


class SandboxUnavailable(JobForgeError):
    """JOBFORGE_VERIFY_SANDBOX=required, but bubblewrap does not work on this worker."""

    code = "sandbox_unavailable"
    status = 400


class ToolchainUnavailable(JobForgeError):
    """A toolchain the verify pack needs could not be provisioned on this worker."""

    code = "toolchain_unavailable"
    status = 400

    def __init__(self, message: str | None = None, *, tool: str = "") -> None:
        super().__init__(message, tool=tool)


class VerifyIncomplete(JobForgeError):
    """The repository could not be verified on this worker (a toolchain, the registry or the install failed)."""

    code = "verify_incomplete"
    status = 400




# -- the security gate -------------------------------------------------------------------------------


class PayloadTooLarge(JobForgeError):
    """The payload is larger than allowed."""

    code = "payload_too_large"
    status = 413

    def __init__(self, message: str | None = None, *, limit: str = "max_bytes", allowed: int = 0,
                 actual: int = 0) -> None:
        super().__init__(message or f"payload of {actual} bytes is over the {limit} limit of {allowed} bytes",
                         limit=limit, allowed=allowed, actual=actual)


class PayloadLimitExceeded(JobForgeError):
    """The payload breaks a structural limit."""

    code = "payload_limit_exceeded"
    status = 422

    def __init__(self, message: str | None = None, *, limit: str = "", allowed: int = 0, actual: int = 0,
                 path: str = "$") -> None:
        text = (f"{message} at {path}" if message
                else f"payload breaks {limit} (allowed {allowed}, found {actual}) at {path}")
        super().__init__(text, limit=limit, allowed=allowed, actual=actual, path=path)


class UnstorableText(JobForgeError):
    """The request holds text JobForge cannot store (NUL, or an unpaired surrogate)."""

    code = "unstorable_text"
    status = 422

    def __init__(self, path: str = "$", char: str = "", what: str = "the request") -> None:
        name = "NUL" if char == "\x00" else "an unpaired surrogate"
        point = f"U+{ord(char):04X}" if char else ""
        super().__init__(f"{path} in {what} holds {name} ({point}): PostgreSQL cannot store it; remove or "
                         "encode it", path=path, code_point=point)


class SecretInInputs(JobForgeError):
    """The inputs carry what looks like a secret; pass a reference to it instead."""

    code = "secret_in_inputs"
    status = 422

    def __init__(self, path: str = "$", why: str = "") -> None:
        super().__init__(f"the inputs carry what looks like a secret at {path} ({why}); pass a reference "
                         "(a secret name), never the value", path=path, why=why)


class Unauthenticated(JobForgeError):
    """A valid API key is needed (Authorization: Bearer <key>)."""

    code = "unauthenticated"
    status = 401


class InsufficientScope(JobForgeError):
    """The credentials lack a scope this request needs."""

    code = "insufficient_scope"
    status = 403

    def __init__(self, message: str | None = None, *, missing: list[str] | None = None,
                 required: list[str] | None = None) -> None:
        missing = list(missing or [])
        super().__init__(message or f"missing scope(s): {', '.join(missing)}", missing=missing,
                         required=list(required or []))
        self.missing = missing


class RateLimited(JobForgeError):
    """Too many requests; retry later."""

    code = "rate_limited"
    status = 429

    def __init__(self, message: str | None = None, *, retry_after: float = 1.0, limit: int = 0,
                 period: float = 60.0, bucket: str = "tenant") -> None:
        super().__init__(message or f"rate limit of {limit} per {period:g}s ({bucket}) reached; retry after "
                         f"{retry_after:.2f}s", retry_after=retry_after, limit=limit, period=period, bucket=bucket)
        self.retry_after = retry_after


class TokenInvalid(JobForgeError):
    """The token is not valid."""

    code = "token_invalid"
    status = 403

    def __init__(self, message: str | None = None, *, reason: str = "invalid") -> None:
        super().__init__(message or f"token refused: {reason}", reason=reason)


class PolicyTokenRequired(JobForgeError):
    """This is an action job: it needs a policy token."""

    code = "policy_token_required"
    status = 403

    def __init__(self, template_key: str = "") -> None:
        super().__init__(f"{template_key or 'this template'} is an action job: it needs a policy token "
                         "(`jobforge tokens issue`)", template_key=template_key)


class PolicyTokenInvalid(JobForgeError):
    """The policy token does not authorize this request."""

    code = "policy_token_invalid"
    status = 403

    def __init__(self, message: str | None = None, *, reason: str = "invalid") -> None:
        super().__init__(message or f"policy token refused: {reason}", reason=reason)


class PolicyTokenReplayed(JobForgeError):
    """This policy token was already used; each token authorizes one run."""

    code = "policy_token_replayed"
    status = 409


class UnknownTenant(JobForgeError):
    """No tenant has this id: create it first (`jobforge tenants create NAME`).

    Every request that names a tenant is refused with it when the tenant does not exist (HTTP 404, as an
    unknown run or template): jobs, events, policy tokens, triggers and the lists of a tenant's runs,
    events, triggers and audit entries, from the HTTP API, the SDK, the CLI and a raw Temporal start.
    """

    code = "unknown_tenant"
    status = 404

    def __init__(self, tenant_id: str = "") -> None:
        super().__init__(f"no tenant {tenant_id!r}: create it with `jobforge tenants create {tenant_id}` "
                         "(`jobforge tenants list` shows the tenants there are)", tenant_id=tenant_id)
        self.tenant_id = tenant_id


#: the name this error had before it was the one refusal of every path
TenantNotFound = UnknownTenant


class TenantExists(JobForgeError):
    """A tenant with this id exists already."""

    code = "tenant_exists"
    status = 409

    def __init__(self, tenant_id: str = "") -> None:
        super().__init__(f"tenant {tenant_id!r} exists already", tenant_id=tenant_id)


class ApiKeyNotFound(JobForgeError):
    """No API key has this id."""

    code = "api_key_not_found"
    status = 404

    def __init__(self, key_id: str = "") -> None:
        super().__init__(f"no API key {key_id!r}", key_id=key_id)


class NotFound(JobForgeError):
    """Nothing is here."""

    code = "not_found"
    status = 404





def http_status(err: JobForgeError) -> int:
    """The HTTP status answering ``err`` (its class's ``status``)."""
    return type(err).status


# -- replay bundles ---------------------------------------------------------------------------------


class RunStillRunning(JobForgeError):
    """The run has not finished; only finished runs can be exported."""

    code = "run_still_running"
    status = 409


class ReplayUnavailable(JobForgeError):
    """What a bundle needs of this run was not captured and Temporal no longer has it."""

    code = "replay_unavailable"
    status = 410


class BundleInvalid(JobForgeError):
    """This directory is not a readable replay bundle."""

    code = "bundle_invalid"
    status = 400




# -- events and triggers ----------------------------------------------------------------------------


class EventNotFound(JobForgeError):
    """No event of the tenant has this type and id first seen at this time."""

    code = "event_not_found"
    status = 404

    def __init__(self, event_type: str = "", event_id: str = "") -> None:
        super().__init__(f"no event {event_type}/{event_id} first seen at that time", event_type=event_type,
                         event_id=event_id)


class TriggerNotFound(JobForgeError):
    """No trigger has this name."""

    code = "trigger_not_found"
    status = 404

    def __init__(self, name: str = "") -> None:
        super().__init__(f"no trigger {name!r}", trigger=name)


class TriggerExists(JobForgeError):
    """A trigger with this name exists already."""

    code = "trigger_exists"
    status = 409

    def __init__(self, name: str = "") -> None:
        super().__init__(f"trigger {name!r} exists already", trigger=name)


class ScheduleMissing(JobForgeError):
    """The trigger's Temporal Schedule is gone (deleted outside JobForge)."""

    code = "schedule_missing"
    status = 409

    def __init__(self, name: str = "", tenant_id: str = "", schedule_id: str = "") -> None:
        where = f" --tenant {tenant_id}" if tenant_id else ""
        super().__init__(
            f"trigger {name!r}: its Temporal Schedule {schedule_id} is missing (deleted outside JobForge); "
            f"recreate it with `jobforge triggers repair {name}{where}` or remove the trigger with "
            f"`jobforge triggers delete {name}{where}`", trigger=name, tenant_id=tenant_id, schedule_id=schedule_id)


class TriggerInputInvalid(JobForgeError):
    """A trigger fire workflow was started without a valid trigger fire input."""

    code = "trigger_input_invalid"
    status = 422




# -- observability ------------------------------------------------------------------------------------


class TelemetryUnavailable(JobForgeError):
    """The metrics endpoint or the trace exporter cannot be set up."""

    code = "telemetry_unavailable"
    status = 400


class RoutingTimeout(JobForgeError):
    """The event has not been routed yet (it still will be: routing is durable)."""

    code = "routing_timeout"
    status = 504
    retryable = True




# -- runs started through Temporal itself (raw starts, the UI, the stock CLI) --------------------------


class InvalidRunArgument(JobForgeError):
    """The workflow's argument is not a JobRun (see `jobforge templates --json` or docs/temporal.md)."""

    code = "invalid_run_argument"
    status = 400


class UnknownWorkflowType(JobForgeError):
    """No JobForge template or workflow has this workflow type."""

    code = "unknown_workflow_type"
    status = 404


class SearchAttributeMismatch(JobForgeError):
    """The run's search attributes contradict its argument."""

    code = "search_attribute_mismatch"
    status = 400




# -- the command line and the dev stack ----------------------------------------------------------------


class StackNotFound(JobForgeError):
    """No JobForge stack was found: start one with `jobforge dev`, or point JOBFORGE_DATABASE_URL and
    JOBFORGE_TEMPORAL_ADDRESS at one."""

    code = "stack_not_found"
    status = 503


class SealedSecretInvalid(JobForgeError):
    """The sealed secret cannot be opened with this private key (another recipient's, or damaged)."""

    code = "sealed_secret_invalid"
    status = 400




# -- the console ---------------------------------------------------------------------------------------


class TenantForbidden(JobForgeError):
    """These credentials belong to another tenant."""

    code = "tenant_forbidden"
    status = 403

    def __init__(self, tenant_id: str = "") -> None:
        super().__init__(f"these credentials belong to another tenant than {tenant_id!r}", tenant_id=tenant_id)


class OperatorOnly(JobForgeError):
    """Only an operator may do this (sign in with the operator token)."""

    code = "operator_only"
    status = 403


class CsrfRejected(JobForgeError):
    """The form was not sent by this console session (missing or wrong CSRF token, or a foreign origin)."""

    code = "csrf_rejected"
    status = 403


