"""docs/temporal.md as a user runs it: every template started with the stock `temporal` CLI, a raw
`Client.start_workflow` and the UI form's input, against `jobforge dev`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.docrun import Outcome, run_page
from tests.support.procs import ROOT, env_with

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(900)
def test_temporal_page_runs_as_written(stack_tmp_path: Path) -> None:
    """Every shell and marked python block of docs/temporal.md passes, in order: each template started through
    Temporal itself, the refusals (malformed argument, unknown type, contradicting attribute) and how the runs
    appear (run records, audit, the tenant filter). The page has no stack block: the runner starts the stack,
    which `jobforge` finds through the state file and the stock `temporal` CLI and the python block through
    TEMPORAL_ADDRESS, and stops it when the session ends."""
    work = stack_tmp_path / "work"
    work.mkdir()
    env = env_with({"HOME": str(stack_tmp_path / "home"), "TERM": "dumb"})
    env.pop("PYTHONPATH", None)
    report = run_page(ROOT / "docs" / "temporal.md", work, env, stack=True, activate=True, source="docs/temporal.md")
    print(report.summary())
    if not report.ok:
        pytest.fail(report.explain(), pytrace=False)
    assert sum(r.outcome is Outcome.PASSED for r in report.results) >= 12
    first = report.results[0]
    assert (first.block.source, first.outcome) == ("<docrun>", Outcome.PASSED)  # the stack the runner started
    assert not (work / ".jobforge" / "state.json").exists(), "the stack outlived the session"
