"""Every tutorial of the documentation site runs as written, start to finish, against the embedded stack."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.docpages import TUTORIALS, check_docs_page

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(900)
@pytest.mark.parametrize("page", TUTORIALS)
def test_the_tutorial_runs_as_written(page: str, stack_tmp_path: Path) -> None:
    """Each shell and python block of the page runs in order in one shell, against `jobforge dev`, and passes."""
    check_docs_page(page, stack_tmp_path)
