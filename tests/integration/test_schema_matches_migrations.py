"""The ORM's tables (``shared/store/tables.py``) describe exactly the schema the Alembic migrations build.

Two checks on fresh databases of the shared PostgreSQL, each created and dropped by the test:

* Alembic's autogenerate comparison (``compare_metadata``: tables, columns, types, nullability, server
  defaults, indexes, unique constraints) between the metadata and a database upgraded to head;
* PostgreSQL's own rendering of every column, index (predicates included, which autogenerate does not
  compare) and constraint (check and foreign keys too) of that database and of one built from the
  metadata alone (``create_all``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from psycopg import sql
from sqlalchemy import MetaData, create_engine, pool

from shared.store.migrate import sync_url, upgrade
from shared.store.tables import Base

pytestmark = pytest.mark.integration

PG_ADMIN = os.environ.get("JOBFORGE_TEST_PG", "host=127.0.0.1 port=5432 user=postgres dbname=postgres")

_COLUMNS = """
SELECT table_name, column_name, data_type, character_maximum_length, is_nullable, column_default
  FROM information_schema.columns WHERE table_schema = 'public' AND table_name <> 'alembic_version'
 ORDER BY 1, 2
"""
_INDEXES = """
SELECT tablename, indexname, indexdef FROM pg_indexes
 WHERE schemaname = 'public' AND tablename <> 'alembic_version' ORDER BY 1, 2
"""
_CONSTRAINTS = """
SELECT c.conrelid::regclass::text, c.conname, c.contype, pg_get_constraintdef(c.oid)
  FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
 WHERE n.nspname = 'public' AND c.conrelid::regclass::text <> 'alembic_version' ORDER BY 1, 2
"""


@contextmanager
def fresh_database() -> Iterator[str]:
    """The SQLAlchemy URL of a new, empty database, dropped when the block ends."""
    name = f"jobforge_schema_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        info = psycopg.conninfo.conninfo_to_dict(PG_ADMIN)
        yield f"postgresql+psycopg://{info.get('user', 'postgres')}@{info.get('host', '127.0.0.1')}:" \
              f"{info.get('port', 5432)}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def differences(url: str, metadata: MetaData) -> list[Any]:
    """What autogenerate would write to bring the database at ``url`` to ``metadata`` (empty: they match)."""
    engine = create_engine(sync_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


def catalog(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every column, index and constraint of the database at ``url`` as PostgreSQL renders them."""
    conninfo = sync_url(url).replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(conninfo) as conn:
        return {name: [tuple(row) for row in conn.execute(query).fetchall()]
                for name, query in (("columns", _COLUMNS), ("indexes", _INDEXES), ("constraints", _CONSTRAINTS))}


@pytest.fixture(scope="module")
def migrated() -> Iterator[str]:
    """A database upgraded to head by the migrations."""
    with fresh_database() as url:
        upgrade(url)
        yield url


def test_autogenerate_finds_nothing_between_the_tables_and_the_migrations(migrated: str) -> None:
    """Alembic's comparison of the ORM metadata with a database the migrations built finds no difference."""
    assert differences(migrated, Base.metadata) == []


def test_the_migrated_schema_is_the_one_the_tables_declare(migrated: str) -> None:
    """Columns (type, length, nullability, default), indexes (with their predicates) and constraints of the
    migrated database are, as PostgreSQL renders them, those of a database built from the metadata alone."""
    with fresh_database() as declared:
        engine = create_engine(sync_url(declared), poolclass=pool.NullPool)
        try:
            Base.metadata.create_all(engine)
        finally:
            engine.dispose()
        want, got = catalog(declared), catalog(migrated)
    for part in ("columns", "indexes", "constraints"):
        assert sorted(set(got[part]) - set(want[part])) == [], f"{part} only the migrations make"
        assert sorted(set(want[part]) - set(got[part])) == [], f"{part} only the tables declare"


def test_the_comparison_sees_a_table_that_differs(migrated: str) -> None:
    """A copy of the metadata with one column shortened, one made nullable and one index dropped is three
    differences: the comparison above can fail."""
    changed = MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.sorted_tables:
        table.to_metadata(changed)
    runs = changed.tables["runs"]
    runs.c.actor.type.length = 100
    runs.c.error.nullable = True
    runs.indexes.discard(next(ix for ix in runs.indexes if ix.name == "ix_runs_tenant_trace"))
    kinds = sorted(d[0][0] if isinstance(d, list) else d[0] for d in differences(migrated, changed))
    assert kinds == ["modify_nullable", "modify_type", "remove_index"]
