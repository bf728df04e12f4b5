"""`jobforge dev` prepares its database: migrations only when it is not at head, then the demo tenant."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.conftest import PG_ADMIN
from workers.dev import prepare_database

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def empty_url() -> Iterator[str]:
    """A new, empty database on the real PostgreSQL (never migrated), dropped afterwards."""
    name = f"jobforge_prepare_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_a_new_database_is_migrated_and_a_migrated_one_is_left_without_loading_alembic(empty_url: str) -> None:
    """The first start migrates and creates the tenant; a later one finds the head revision, runs no
    migration and never imports Alembic, and the tenant is still there once."""
    assert prepare_database(empty_url, "demo") is True
    probe = ("import sys; from workers.dev import prepare_database; "
             f"print(prepare_database({empty_url!r}, 'demo'), 'alembic' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    assert done.stdout.split() == ["False", "False"]
    with psycopg.connect(empty_url.replace("postgresql+psycopg", "postgresql")) as conn:
        assert conn.execute("SELECT count(*) FROM tenants WHERE tenant_id = 'demo'").fetchone() == (1,)


async def test_the_store_reads_no_revision_on_a_never_migrated_database_and_the_head_after(empty_url: str) -> None:
    """Store.schema_revision (``jobforge db current``, the healthcheck) answers None before any migration
    (the version table does not exist) and the head revision once migrated."""
    from shared.store import Store
    from shared.store.schema import HEAD_REVISION

    async with Store.opened(empty_url) as store:
        assert await store.schema_revision() is None
        prepare_database(empty_url, "demo")
        assert await store.schema_revision() == HEAD_REVISION
