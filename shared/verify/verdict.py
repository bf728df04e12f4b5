"""The verdict of a verify run and the assembly of its report (pure)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from shared.verify import pins
from shared.verify.models import (
    ArtifactRef,
    Plan,
    StepName,
    StepResult,
    StepStatus,
    Verdict,
    VerifyReport,
)

#: an install's output that says the registry, the network or the machine failed, not the repository
_INFRASTRUCTURE = re.compile("|".join((
    r"ECONNREFUSED", r"ECONNRESET", r"ENOTFOUND", r"ETIMEDOUT", r"EAI_AGAIN", r"ENETUNREACH", r"ERR_SOCKET_TIMEOUT",
    r"getaddrinfo", r"Temporary failure in name resolution", r"Name or service not known", r"Network is unreachable",
    r"Could not resolve host", r"unable to access '", r"self[- ]signed certificate", r"certificate verify failed",
    r"Connection refused", r"Connection reset", r"Could not connect", r"Failed to establish a new connection",
    r"error sending request", r"Failed to fetch", r"operation timed out", r"Read timed out", r"dns error",
    r"HTTP status server error \(5\d\d", r"\b50[234] (Bad Gateway|Service Unavailable|Gateway Time-?out)",
    r"ERR_PNPM_META_FETCH_FAIL", r"ERR_PNPM_FETCH_5\d\d", r"YN0001: .*(RequestError|HTTPError|ETIMEDOUT)",
    r"No space left on device", r"Cannot allocate memory", r"Read-only file system",
    r"No interpreter found", r"no Python interpreter", r"is not installed on this worker",
)), re.IGNORECASE)
#: an install's output that says the repository's own declarations are inconsistent: what its CI fails on too
_REPOSITORY = re.compile("|".join((
    r"lockfile .*needs to be updated", r"The lockfile at .* needs to be updated", r"ERR_PNPM_OUTDATED_LOCKFILE",
    r"ERR_PNPM_LOCKFILE", r"YN0028", r"The lockfile would have been modified", r"Your lockfile needs to be updated",
    r"`npm ci` can only install packages when your package\.json and package-lock\.json", r"are not in sync",
    r"No solution found when resolving", r"ResolutionImpossible", r"Because .* depends on .* we can conclude",
    r"Could not find a version that satisfies", r"No matching distribution found", r"ERESOLVE", r"ETARGET",
    r"No matching version found", r"is not in this registry", r"E404", r"was not found in the package registry",
    r"pyproject\.toml.* (is invalid|parse error)", r"TOML parse error", r"Failed to parse",
    r"ERR_PNPM_NO_MATCHING_VERSION", r"SolverProblemError", r"pyproject.toml changed significantly since",
    r"poetry\.lock is not consistent",
)), re.IGNORECASE)


def install_failure(output: str, reason: str) -> tuple[StepStatus, str]:
    """The status of a failed install: ``failed`` when the output shows the repository's own declarations
    are broken (a stale lock, an unsatisfiable or unknown requirement), ``error`` otherwise — a registry
    or network outage, a missing toolchain or system library: the repository could not be judged."""
    infrastructure = _INFRASTRUCTURE.search(output)
    if infrastructure is not None:
        return StepStatus.ERROR, f"{reason}; infrastructure: {_line(output, infrastructure)}"
    repository = _REPOSITORY.search(output)
    if repository is not None:
        return StepStatus.FAILED, f"{reason}: {_line(output, repository)}"
    return StepStatus.ERROR, f"{reason}: the environment could not be built here (see the install log)"


#: a check's output that says it could not parse the code (a syntax newer than the interpreter it ran on)
_UNPARSABLE = re.compile("|".join((
    r"SyntaxError", r"Could not parse ast", r"invalid syntax", r"is not valid Python", r"error: cannot parse",
)), re.IGNORECASE)


#: a check's output that says the machine failed it, not the code (mypy gives each worker of its own pool a few
#: seconds to start; on a loaded machine one can miss that)
_TRANSIENT = re.compile("|".join((
    r"Failed to establish connection with worker",
)))


def transient_failure(output: str) -> str:
    """The line of a failed check's output that says the machine failed it, not the code ("" when none does)."""
    match = _TRANSIENT.search(output)
    return _line(output, match) if match is not None else ""


def interpreter_shortfall(output: str, ran_on: str, declared: str) -> str:
    """Why a failed check is the worker's shortfall and not the repository's ("" when it is not): the check
    ran on Python ``ran_on`` — the newest interpreter this worker has that the repository admits —, the
    repository declares support for a newer ``declared`` Python, and the output says the code did not parse."""
    if not ran_on or not declared or not pins.older(ran_on, declared):
        return ""
    match = _UNPARSABLE.search(output)
    if match is None:
        return ""
    return (f"the check could not parse the code on Python {ran_on}, the newest interpreter on this worker "
            f"({_line(output, match)}); the repository declares Python {declared}: this worker lacks a newer "
            "Python (the package registries it reaches ship none)")


def _line(text: str, match: re.Match[str]) -> str:
    start = text.rfind("\n", 0, match.start()) + 1
    end = text.find("\n", match.end())
    return text[start: end if end >= 0 else len(text)].strip()[:300]


def verdict(results: Iterable[StepResult]) -> Verdict:
    """Failed when any check failed, timed out or was cancelled; error when none failed but a step
    could not be judged (a toolchain, the registry or the install failed us); passed when at least
    one check passed.

    Skipped steps neither pass nor fail; a run where every check was skipped verified nothing,
    which is reported as such (and is not a pass).
    """
    results = list(results)
    if any(r.status.is_failure for r in results):
        return Verdict.FAILED
    if any(r.status.is_error for r in results):
        return Verdict.ERROR
    checks = [r for r in results if r.name is not StepName.INSTALL]
    if any(r.status is StepStatus.PASSED for r in checks):
        return Verdict.PASSED
    return Verdict.NOTHING_TO_VERIFY


def skipped(plan: Plan, name: StepName, reason: str = "") -> StepResult:
    spec = plan.step(name)
    return StepResult(name=name, status=StepStatus.SKIPPED, command=spec.display, reason=reason or spec.reason,
                      origin=spec.origin)


def error_cause(results: Iterable[StepResult]) -> str:
    """What the worker lacked, from the steps that could not be judged ("" when none)."""
    return "; ".join(f"{r.name.value}: {r.reason}" for r in results if r.status.is_error)


def unrun_steps(plan: Plan, ran: Iterable[StepName], reason: str) -> list[StepResult]:
    """Results for the plan's runnable steps that did not run (e.g. after a failed install)."""
    done = set(ran)
    return [skipped(plan, s.name, reason) for s in plan.steps if s.runnable and s.name not in done]


def ordered(results: Iterable[StepResult]) -> list[StepResult]:
    order = list(StepName)
    return sorted(results, key=lambda r: order.index(r.name))


def log_artifacts(results: Sequence[StepResult]) -> list[ArtifactRef]:
    return [r.log for r in ordered(results) if r.log is not None]


def summary(report: VerifyReport) -> dict[str, object]:
    """The run record's summary of a verify report."""
    return {
        "passed": report.passed, "verdict": report.verdict.value, "cached": report.cached,
        "fingerprint": report.fingerprint,
        "steps": {r.name.value: r.status.value for r in report.steps},
    }
