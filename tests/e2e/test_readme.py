"""README.md as a new user runs it: every shell block, as written, in one session against the embedded stack."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from tests.support.docrun import Outcome, checkout_view, run_page
from tests.support.procs import ROOT, env_with

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(900)
def test_every_readme_block_runs_as_written(stack_tmp_path: Path) -> None:
    """The README's shell blocks run in order in one shell, in a checkout, against `jobforge dev`; each passes."""
    checkout = checkout_view(ROOT, stack_tmp_path / "jobforge")
    # a user's download caches outlive one session: share the verify pack's between runs of this test
    cache = Path(tempfile.gettempdir()) / "jobforge-test-verify-cache"
    env = env_with({"HOME": str(stack_tmp_path / "home"), "TERM": "dumb", "JOBFORGE_VERIFY_CACHE_DIR": str(cache)})
    env.pop("PYTHONPATH", None)  # the user's shell has no PYTHONPATH; the activated venv is what finds JobForge
    env.pop("VIRTUAL_ENV", None)
    report = run_page(ROOT / "README.md", checkout, env, source="README.md")
    print(report.summary())
    if not report.ok:
        pytest.fail(report.explain(), pytrace=False)
    assert any(r.block.stack and r.outcome is Outcome.PASSED for r in report.results), "no block started the stack"


def test_a_page_without_a_stack_block_gets_one(stack_tmp_path: Path) -> None:
    """A docs page that assumes a running stack gets one from the runner: `jobforge` finds it through the state
    file, the stock `temporal` CLI through TEMPORAL_ADDRESS; the stack is gone when the session ends."""
    page = stack_tmp_path / "page.md"
    page.write_text("<!-- docrun: expect JobForgeTenant -->\n```sh\njobforge status\n"
                    "temporal operator search-attribute list\n```\n")
    work = stack_tmp_path / "work"
    work.mkdir()
    report = run_page(page, work, env_with({"HOME": str(stack_tmp_path / "home")}), stack=True, activate=True)
    if not report.ok:
        pytest.fail(report.explain(), pytrace=False)
    assert [(r.block.source, r.outcome) for r in report.results] == [("<docrun>", Outcome.PASSED),
                                                                      ("page.md", Outcome.PASSED)]
    assert not (work / ".jobforge" / "state.json").exists()
