"""Every failure JobForge reports, one small class each.

Each class's docstring is its default message. ``code`` is a stable, machine-readable name used
as the Temporal ``ApplicationError`` type, the CLI's error line and the HTTP problem type.
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


class RepoPathRefused(JobForgeError):
    """This repository path may not be verified here."""

    code = "repo_path_refused"


class RepoCheckoutFailed(JobForgeError):
    """The repository could not be cloned or checked out."""

    code = "repo_checkout_failed"


class VerifyConfigInvalid(JobForgeError):
    """The repository's verify configuration is invalid."""

    code = "verify_config_invalid"


class SandboxUnavailable(JobForgeError):
    """JOBFORGE_VERIFY_SANDBOX=required, but bubblewrap does not work on this worker."""

    code = "sandbox_unavailable"


class ToolchainUnavailable(JobForgeError):
    """A toolchain the verify pack needs could not be provisioned on this worker."""

    code = "toolchain_unavailable"

    def __init__(self, message: str | None = None, *, tool: str = "") -> None:
        super().__init__(message, tool=tool)


class VerifyIncomplete(JobForgeError):
    """The repository could not be verified on this worker (a toolchain, the registry or the install failed)."""

    code = "verify_incomplete"


ERRORS_BY_CODE: dict[str, type[JobForgeError]] = {
    cls.code: cls
    for cls in (JobForgeError, FeatureDisabled, TemplateNotFound, InvalidInputs, InvalidRequest, UnknownFlag,
                IdempotencyConflict, RunNotFound, RunFailed, StoreUnavailable, TemporalUnavailable, PortInUse,
                StackNotRunning, StackStartFailed)
}
ERRORS_BY_CODE.update({cls.code: cls for cls in (RepoPathRefused, RepoCheckoutFailed, VerifyConfigInvalid,
                                                  SandboxUnavailable, ToolchainUnavailable,
                                                  VerifyIncomplete)})


# -- the security gate -------------------------------------------------------------------------------


class PayloadTooLarge(JobForgeError):
    """The payload is larger than allowed."""

    code = "payload_too_large"

    def __init__(self, message: str | None = None, *, limit: str = "max_bytes", allowed: int = 0,
                 actual: int = 0) -> None:
        super().__init__(message or f"payload of {actual} bytes is over the {limit} limit of {allowed} bytes",
                         limit=limit, allowed=allowed, actual=actual)


class PayloadLimitExceeded(JobForgeError):
    """The payload breaks a structural limit."""

    code = "payload_limit_exceeded"

    def __init__(self, message: str | None = None, *, limit: str = "", allowed: int = 0, actual: int = 0,
                 path: str = "$") -> None:
        text = (f"{message} at {path}" if message
                else f"payload breaks {limit} (allowed {allowed}, found {actual}) at {path}")
        super().__init__(text, limit=limit, allowed=allowed, actual=actual, path=path)


class UnstorableText(JobForgeError):
    """The request holds text JobForge cannot store (NUL, or an unpaired surrogate)."""

    code = "unstorable_text"

    def __init__(self, path: str = "$", char: str = "", what: str = "the request") -> None:
        name = "NUL" if char == "\x00" else "an unpaired surrogate"
        point = f"U+{ord(char):04X}" if char else ""
        super().__init__(f"{path} in {what} holds {name} ({point}): PostgreSQL cannot store it; remove or "
                         "encode it", path=path, code_point=point)


class SecretInInputs(JobForgeError):
    """The inputs carry what looks like a secret; pass a reference to it instead."""

    code = "secret_in_inputs"

    def __init__(self, path: str = "$", why: str = "") -> None:
        super().__init__(f"the inputs carry what looks like a secret at {path} ({why}); pass a reference "
                         "(a secret name), never the value", path=path, why=why)


class Unauthenticated(JobForgeError):
    """A valid API key is needed (Authorization: Bearer <key>)."""

    code = "unauthenticated"


class InsufficientScope(JobForgeError):
    """The credentials lack a scope this request needs."""

    code = "insufficient_scope"

    def __init__(self, message: str | None = None, *, missing: list[str] | None = None,
                 required: list[str] | None = None) -> None:
        missing = list(missing or [])
        super().__init__(message or f"missing scope(s): {', '.join(missing)}", missing=missing,
                         required=list(required or []))
        self.missing = missing


class RateLimited(JobForgeError):
    """Too many requests; retry later."""

    code = "rate_limited"

    def __init__(self, message: str | None = None, *, retry_after: float = 1.0, limit: int = 0,
                 period: float = 60.0, bucket: str = "tenant") -> None:
        super().__init__(message or f"rate limit of {limit} per {period:g}s ({bucket}) reached; retry after "
                         f"{retry_after:.2f}s", retry_after=retry_after, limit=limit, period=period, bucket=bucket)
        self.retry_after = retry_after


class TokenInvalid(JobForgeError):
    """The token is not valid."""

    code = "token_invalid"

    def __init__(self, message: str | None = None, *, reason: str = "invalid") -> None:
        super().__init__(message or f"token refused: {reason}", reason=reason)


class PolicyTokenRequired(JobForgeError):
    """This is an action job: it needs a policy token."""

    code = "policy_token_required"

    def __init__(self, template_key: str = "") -> None:
        super().__init__(f"{template_key or 'this template'} is an action job: it needs a policy token "
                         "(`jobforge tokens issue`)", template_key=template_key)


class PolicyTokenInvalid(JobForgeError):
    """The policy token does not authorize this request."""

    code = "policy_token_invalid"

    def __init__(self, message: str | None = None, *, reason: str = "invalid") -> None:
        super().__init__(message or f"policy token refused: {reason}", reason=reason)


class PolicyTokenReplayed(JobForgeError):
    """This policy token was already used; each token authorizes one run."""

    code = "policy_token_replayed"


class TenantNotFound(JobForgeError):
    """No tenant has this id."""

    code = "tenant_not_found"

    def __init__(self, tenant_id: str = "") -> None:
        super().__init__(f"no tenant {tenant_id!r}", tenant_id=tenant_id)


class TenantExists(JobForgeError):
    """A tenant with this id exists already."""

    code = "tenant_exists"

    def __init__(self, tenant_id: str = "") -> None:
        super().__init__(f"tenant {tenant_id!r} exists already", tenant_id=tenant_id)


class ApiKeyNotFound(JobForgeError):
    """No API key has this id."""

    code = "api_key_not_found"

    def __init__(self, key_id: str = "") -> None:
        super().__init__(f"no API key {key_id!r}", key_id=key_id)


class NotFound(JobForgeError):
    """Nothing is here."""

    code = "not_found"


ERRORS_BY_CODE.update({cls.code: cls for cls in (
    PayloadTooLarge, PayloadLimitExceeded, UnstorableText, SecretInInputs, Unauthenticated, InsufficientScope,
    RateLimited, TokenInvalid, PolicyTokenRequired, PolicyTokenInvalid, PolicyTokenReplayed, TenantNotFound,
    TenantExists, ApiKeyNotFound, NotFound)})

#: the HTTP status of each error code (problem+json answers); unknown codes: 503 if retryable else 400
HTTP_STATUS: dict[str, int] = {
    "invalid_request": 400, "invalid_inputs": 422, "payload_limit_exceeded": 422, "secret_in_inputs": 422,
    "unstorable_text": 422,
    "payload_too_large": 413, "unauthenticated": 401, "insufficient_scope": 403, "feature_disabled": 403,
    "token_invalid": 403, "policy_token_required": 403, "policy_token_invalid": 403,
    "policy_token_replayed": 409, "idempotency_conflict": 422, "rate_limited": 429, "template_not_found": 404,
    "run_not_found": 404, "tenant_not_found": 404, "api_key_not_found": 404, "not_found": 404,
    "tenant_exists": 409, "unknown_flag": 400, "store_unavailable": 503, "temporal_unavailable": 503,
    "jobforge_error": 500,
}


def http_status(err: JobForgeError) -> int:
    """The HTTP status answering ``err``."""
    return HTTP_STATUS.get(err.code, 503 if err.retryable else 400)


# -- replay bundles ---------------------------------------------------------------------------------


class RunStillRunning(JobForgeError):
    """The run has not finished; only finished runs can be exported."""

    code = "run_still_running"


class ReplayUnavailable(JobForgeError):
    """What a bundle needs of this run was not captured and Temporal no longer has it."""

    code = "replay_unavailable"


class BundleInvalid(JobForgeError):
    """This directory is not a readable replay bundle."""

    code = "bundle_invalid"


ERRORS_BY_CODE.update({cls.code: cls for cls in (RunStillRunning, ReplayUnavailable, BundleInvalid)})
HTTP_STATUS.update({"run_still_running": 409, "replay_unavailable": 410, "bundle_invalid": 400})


# -- events and triggers ----------------------------------------------------------------------------


class TriggerNotFound(JobForgeError):
    """No trigger has this name."""

    code = "trigger_not_found"

    def __init__(self, name: str = "") -> None:
        super().__init__(f"no trigger {name!r}", trigger=name)


class TriggerExists(JobForgeError):
    """A trigger with this name exists already."""

    code = "trigger_exists"

    def __init__(self, name: str = "") -> None:
        super().__init__(f"trigger {name!r} exists already", trigger=name)


class ScheduleMissing(JobForgeError):
    """The trigger's Temporal Schedule is gone (deleted outside JobForge)."""

    code = "schedule_missing"

    def __init__(self, name: str = "", tenant_id: str = "", schedule_id: str = "") -> None:
        where = f" --tenant {tenant_id}" if tenant_id else ""
        super().__init__(
            f"trigger {name!r}: its Temporal Schedule {schedule_id} is missing (deleted outside JobForge); "
            f"recreate it with `jobforge triggers repair {name}{where}` or remove the trigger with "
            f"`jobforge triggers delete {name}{where}`", trigger=name, tenant_id=tenant_id, schedule_id=schedule_id)


class TriggerInputInvalid(JobForgeError):
    """A trigger fire workflow was started without a valid trigger fire input."""

    code = "trigger_input_invalid"


ERRORS_BY_CODE.update({cls.code: cls for cls in (TriggerNotFound, TriggerExists, ScheduleMissing,
                                                 TriggerInputInvalid)})
HTTP_STATUS.update({"trigger_not_found": 404, "trigger_exists": 409, "schedule_missing": 409,
                    "trigger_input_invalid": 422})


# -- observability ------------------------------------------------------------------------------------


class TelemetryUnavailable(JobForgeError):
    """The metrics endpoint or the trace exporter cannot be set up."""

    code = "telemetry_unavailable"


class RoutingTimeout(JobForgeError):
    """The event has not been routed yet (it still will be: routing is durable)."""

    code = "routing_timeout"
    retryable = True


ERRORS_BY_CODE.update({RoutingTimeout.code: RoutingTimeout})
HTTP_STATUS.update({RoutingTimeout.code: 504})


# -- runs started through Temporal itself (raw starts, the UI, the stock CLI) --------------------------


class InvalidRunArgument(JobForgeError):
    """The workflow's argument is not a JobRun (see `jobforge templates --json` or docs/temporal.md)."""

    code = "invalid_run_argument"


class UnknownWorkflowType(JobForgeError):
    """No JobForge template or workflow has this workflow type."""

    code = "unknown_workflow_type"


class SearchAttributeMismatch(JobForgeError):
    """The run's search attributes contradict its argument."""

    code = "search_attribute_mismatch"


ERRORS_BY_CODE.update({cls.code: cls for cls in (InvalidRunArgument, UnknownWorkflowType, SearchAttributeMismatch)})
HTTP_STATUS.update({InvalidRunArgument.code: 400, UnknownWorkflowType.code: 404, SearchAttributeMismatch.code: 400})


# -- the command line and the dev stack ----------------------------------------------------------------


class StackNotFound(JobForgeError):
    """No JobForge stack was found: start one with `jobforge dev`, or point JOBFORGE_DATABASE_URL and
    JOBFORGE_TEMPORAL_ADDRESS at one."""

    code = "stack_not_found"


class SealedSecretInvalid(JobForgeError):
    """The sealed secret cannot be opened with this private key (another recipient's, or damaged)."""

    code = "sealed_secret_invalid"


ERRORS_BY_CODE.update({cls.code: cls for cls in (StackNotFound, SealedSecretInvalid)})
HTTP_STATUS.update({StackNotFound.code: 503, SealedSecretInvalid.code: 400})


# -- the console ---------------------------------------------------------------------------------------


class TenantForbidden(JobForgeError):
    """These credentials belong to another tenant."""

    code = "tenant_forbidden"

    def __init__(self, tenant_id: str = "") -> None:
        super().__init__(f"these credentials belong to another tenant than {tenant_id!r}", tenant_id=tenant_id)


class OperatorOnly(JobForgeError):
    """Only an operator may do this (sign in with the operator token)."""

    code = "operator_only"


class CsrfRejected(JobForgeError):
    """The form was not sent by this console session (missing or wrong CSRF token, or a foreign origin)."""

    code = "csrf_rejected"


ERRORS_BY_CODE.update({cls.code: cls for cls in (TenantForbidden, OperatorOnly, CsrfRejected)})
HTTP_STATUS.update({"tenant_forbidden": 403, "operator_only": 403, "csrf_rejected": 403})
