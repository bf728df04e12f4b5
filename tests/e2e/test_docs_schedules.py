"""docs/schedules.md as a user runs it: the stock `temporal schedule ...` commands and `jobforge triggers ...`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.docrun import Outcome, run_page
from tests.support.procs import ROOT, env_with

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(600)
def test_schedules_page_runs_as_written(stack_tmp_path: Path) -> None:
    """Every shell block of docs/schedules.md passes, in order, against `jobforge dev`: the safe stock edits,
    the drift a stock update causes, repair, and a deleted Schedule's one-line error and recreation."""
    work = stack_tmp_path / "work"
    work.mkdir()
    env = env_with({"HOME": str(stack_tmp_path / "home"), "TERM": "dumb"})
    env.pop("PYTHONPATH", None)
    report = run_page(ROOT / "docs" / "schedules.md", work, env, stack=True, activate=True,
                      source="docs/schedules.md")
    print(report.summary())
    if not report.ok:
        pytest.fail(report.explain(), pytrace=False)
    assert sum(r.outcome is Outcome.PASSED for r in report.results) >= 8
