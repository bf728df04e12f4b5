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

