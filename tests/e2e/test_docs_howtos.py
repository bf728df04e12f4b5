"""The how-to guides for building on JobForge run as written against the embedded stack."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.docpages import HOW_TOS_BUILD, check_docs_page

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(900)
@pytest.mark.parametrize("page", HOW_TOS_BUILD)
def test_the_how_to_runs_as_written(page: str, stack_tmp_path: Path) -> None:
    """Each shell and python block of the page runs in order in one shell, against `jobforge dev`, and passes
    (blocks that need what the test machines lack, such as docker or Temporal Cloud, are marked skip)."""
    check_docs_page(page, stack_tmp_path)
