"""The verify command's final table: what it shows is what the report (and so ``--json``) holds."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from shared.verify.models import SandboxInfo, StepName, StepResult, StepStatus, Verdict, VerifyReport
from workers import cli_verify

INSTALL = ("uv venv --clear --python /usr/bin/python3.11 /srv/jobforge/verify/runs/acme/r1/env && uv pip install "
           "--python /srv/jobforge/verify/runs/acme/r1/env/bin/python -e '.[test]' --group dev")


def test_the_table_shows_each_command_whole_as_the_json_has_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """A long install command is printed whole (never cut), the origin beside it; the sandbox line is the
    cached run's own."""
    buffer = io.StringIO()
    monkeypatch.setattr(cli_verify, "out", Console(file=buffer, width=120, no_color=True))
    report = VerifyReport(
        verdict=Verdict.PASSED, passed=True, cached=True, cached_from_run_id="r0",
        sandbox=SandboxInfo(enabled=False, reason="bubblewrap is not installed on this worker"),
        steps=[StepResult(name=StepName.INSTALL, status=StepStatus.PASSED, command=INSTALL, origin="pyproject.toml"),
               StepResult(name=StepName.TEST, status=StepStatus.PASSED, command="python -m pytest",
                          origin="detected: pytest")])
    cli_verify.print_report(report)
    text = buffer.getvalue()
    rows = [line.split("\u2502") for line in text.splitlines() if line.startswith("\u2502")]
    install_cells = [row[5].strip() for row in rows[: next(i for i, r in enumerate(rows[1:], 1) if r[1].strip())]]
    assert " ".join(install_cells) == INSTALL == report.step(StepName.INSTALL).command  # folded, never cut
    assert "not sandboxed: bubblewrap is not installed on this worker (in the cached run)" in text
