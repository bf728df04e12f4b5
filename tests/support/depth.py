"""How many examples a property test asks hypothesis for: the CI count, or the deep count on demand.

``make test`` and CI run each property test with its ``ci`` count: every run draws new random examples
(hypothesis seeds each run afresh), so successive runs keep searching, and the test's ``@example`` cases
always run. ``JOBFORGE_TEST_DEPTH=deep`` runs the ``deep`` count, the search a change to the code under
test deserves (the C accelerator, the redaction rules, the size limits, the API's routes)::

    JOBFORGE_TEST_DEPTH=deep .venv/bin/pytest -q tests/unit/test_security_native.py
"""

from __future__ import annotations

import os

#: ``deep`` for the deep counts; anything else (or unset) for the CI counts
DEPTH = os.environ.get("JOBFORGE_TEST_DEPTH", "ci")


def examples(*, ci: int, deep: int) -> int:
    """The example count for this run: ``deep`` under ``JOBFORGE_TEST_DEPTH=deep``, else ``ci``."""
    if not 0 < ci <= deep:
        raise ValueError(f"want 0 < ci <= deep, got ci={ci} deep={deep}")
    return deep if DEPTH == "deep" else ci
