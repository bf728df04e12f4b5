"""The documentation site's tutorials and how-to guides, run as written by the doc runner (docrun.py).

Each page is one shell session in a checkout view of its own, against the embedded stack that its
``docrun: stack`` block starts; tests/e2e/test_docs_*.py run every page listed here, and a unit test checks that
the lists name every page under docs/tutorials and docs/how-to.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from tests.support.docrun import Outcome, SessionReport, checkout_view, run_page
from tests.support.procs import ROOT, env_with

DOCS = ROOT / "docs"
#: pages run by tests/e2e/test_docs_tutorials.py
TUTORIALS = ("tutorials/first-verify.md", "tutorials/events-and-triggers.md", "tutorials/nightly-cron.md",
             "tutorials/product-integration.md")
#: pages run by tests/e2e/test_docs_howtos.py (two lists: two test files, which xdist's loadfile spreads)
HOW_TOS_BUILD = ("how-to/job-template.md", "how-to/rotate-keys.md", "how-to/replay-bundles.md",
                 "how-to/temporal-tools.md")
#: pages run by tests/e2e/test_docs_howtos_ops.py
HOW_TOS_OPERATE = ("how-to/production.md", "how-to/kill-switch.md", "how-to/backup-restore.md",
                   "how-to/metrics-and-traces.md")
HOW_TOS = HOW_TOS_BUILD + HOW_TOS_OPERATE


def run_docs_page(page: str, workdir: Path) -> SessionReport:
    """Run ``docs/<page>`` as a user pastes it, in a checkout view under ``workdir``."""
    checkout = checkout_view(ROOT, workdir / "jobforge")
    # a user's download caches outlive one session: share the verify pack's between runs (as the README test)
    cache = Path(tempfile.gettempdir()) / "jobforge-test-verify-cache"
    env = env_with({"HOME": str(workdir / "home"), "TERM": "dumb", "JOBFORGE_VERIFY_CACHE_DIR": str(cache)})
    env.pop("PYTHONPATH", None)  # the user's shell has no PYTHONPATH; the activated venv is what finds JobForge
    env.pop("VIRTUAL_ENV", None)
    return run_page(DOCS / page, checkout, env, source=f"docs/{page}")


def explain(report: SessionReport) -> str | None:
    """Why the page did not run as written, or None when it did (and a stack block started its stack)."""
    if not report.ok:
        return report.explain()
    if not any(r.block.stack and r.outcome is Outcome.PASSED for r in report.results):
        return "no block of the page started the stack"
    return None


def check_docs_page(page: str, workdir: Path) -> None:
    """Run ``docs/<page>`` (:func:`run_docs_page`), print its summary and fail the test with :func:`explain`."""
    report = run_docs_page(page, workdir)
    print(report.summary())
    problem = explain(report)
    if problem:
        pytest.fail(problem, pytrace=False)
