"""The schema revision the code names is the migrations' head."""

from __future__ import annotations

from shared.store.migrate import head_revision
from shared.store.schema import HEAD_REVISION


def test_head_revision_is_the_newest_migration() -> None:
    """HEAD_REVISION names Alembic's one head, so a start that finds it in the database may skip Alembic."""
    assert head_revision() == HEAD_REVISION
