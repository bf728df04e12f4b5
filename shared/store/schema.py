"""The schema revision this code runs on, known without loading Alembic (``jobforge dev`` reads it to skip
Alembic on a database already migrated)."""

from __future__ import annotations

#: the newest migration's revision (``tests/unit/test_schema_head.py`` checks it is Alembic's head)
HEAD_REVISION = "0008"
