"""The verdict of a verify run and the assembly of its report (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from shared.verify.models import (
    ArtifactRef,
    Plan,
    StepName,
    StepResult,
    StepStatus,
    Verdict,
    VerifyReport,
)


def verdict(results: Iterable[StepResult]) -> Verdict:
    """Failed when any step failed, timed out or was cancelled; passed when at least one check passed.

    Skipped steps neither pass nor fail; a run where every check was skipped verified nothing,
    which is reported as such (and is not a pass).
    """
    results = list(results)
    if any(r.status.is_failure for r in results):
        return Verdict.FAILED
    checks = [r for r in results if r.name is not StepName.INSTALL]
    if any(r.status is StepStatus.PASSED for r in checks):
        return Verdict.PASSED
    return Verdict.NOTHING_TO_VERIFY


def skipped(plan: Plan, name: StepName, reason: str = "") -> StepResult:
    spec = plan.step(name)
    return StepResult(name=name, status=StepStatus.SKIPPED, command=spec.display, reason=reason or spec.reason)


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
