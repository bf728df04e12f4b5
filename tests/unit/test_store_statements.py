"""Every SQL statement of JobForge's store is defined once, by name, in shared/store/statements.py."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from shared.store import statements

ROOT = Path(__file__).resolve().parents[2]
#: a statement's opening words, as the stores write them: in a string, or opening a line of a triple-quoted one
SQL = re.compile(r"""(?:["']\s*|^\s*)"""
                 r"(SELECT\s|INSERT\s+INTO\s|UPDATE\s+\w+\s+SET\s|DELETE\s+FROM\s|WITH\s+\w+\s+AS\s*\()", re.MULTILINE)
#: files that may hold SQL of their own: the migrations (history), and the embedded stack's administration
#: of its PostgreSQL server (which database exists: not JobForge's store)
ALLOWED = ("shared/store/statements.py", "shared/store/migrations/", "workers/stack.py")


def test_no_module_outside_statements_writes_sql() -> None:
    """No module of the server packages holds a SQL statement of its own: they name one of ``statements``."""
    found = []
    for package in ("shared", "workers", "activities", "workflows"):
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel.startswith(ALLOWED):
                continue
            found += [f"{rel}:{n}" for n, line in enumerate(path.read_text().splitlines(), 1) if SQL.search(line)]
    assert found == []


def test_the_check_sees_a_statement() -> None:
    """The pattern above matches the statements the stores run (so the check can fail)."""
    assert SQL.search('conn.execute("SELECT * FROM runs WHERE run_id = %s", (run_id,))')
    assert SQL.search(repr(statements.RUN_RECORD_VERDICT))
    assert SQL.search(statements.DEDUPE_CLAIM)
    assert not SQL.search("    select(RunRow)  # SQLAlchemy Core is not what this looks for")


def test_statements_import_nothing() -> None:
    """The statements module loads without SQLAlchemy or psycopg (the CLI's short commands import it)."""
    probe = "import sys, shared.store.statements as s; print(sorted(m for m in sys.modules if m.split('.')[0] in " \
            "('sqlalchemy', 'psycopg', 'pydantic')))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    assert done.stdout.strip() == "[]"


def test_runs_filters_are_bound_never_inlined() -> None:
    """The runs list statement names its values as parameters, whatever filters it is built with."""
    every = statements.runs(statements.RUNS_FILTERS, after_cursor=True)
    for name in statements.RUNS_FILTERS:
        assert f"%({name})s" in every
    assert "%(c_at)s" in every and "%(limit)s" in every and "%(tenant)s" in every
    assert statements.runs() == ("SELECT * FROM runs WHERE tenant_id = %(tenant)s "
                                 "ORDER BY created_at DESC, run_id DESC LIMIT %(limit)s")
