"""Short store-only commands answer without SQLAlchemy, Temporal or structlog (docs/operations.md)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import psycopg

from jobforge.models import RunStatus
from shared.flags import Flag
from shared.store import Store
from shared.store.direct import conninfo
from tests.support.procs import env_with

#: runs ``jobforge ARGS`` in this interpreter, then writes the names of the modules it imported to a file
_PROBE = """
import json, sys
from workers.cli import app
modules_file, args = sys.argv[1], json.loads(sys.argv[2])
sys.argv = ["jobforge", *args]
code = 0
try:
    app()
except SystemExit as exc:
    code = exc.code
with open(modules_file, "w") as f:
    json.dump({"code": code, "modules": sorted(sys.modules)}, f)
"""


def _override(url: str, flag: Flag, enabled: bool) -> None:
    async def go() -> None:
        store = Store.from_url(url)
        try:
            await store.set_flag_override(flag, enabled, actor="test", reason="light command")
        finally:
            await store.close()

    asyncio.run(go())


def _run(args: list[str], url: str, tmp_path: Path) -> tuple[dict[str, Any], subprocess.CompletedProcess[str]]:
    """``jobforge ARGS`` against the database at ``url``: what the probe recorded, and the process."""
    modules_file = tmp_path / "modules.json"
    env = env_with({"JOBFORGE_DATABASE_URL": url, "JOBFORGE_HOME": str(tmp_path / "home")})
    done = subprocess.run([sys.executable, "-c", _PROBE, str(modules_file), json.dumps(args)], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    return json.loads(modules_file.read_text()), done


def test_flags_json_reads_the_store_over_plain_psycopg(pg_url: str, tmp_path: Path) -> None:
    """``jobforge flags --json`` shows a store override (and skips a row of a retired flag), prints only JSON,
    and imports neither SQLAlchemy nor Temporal nor structlog."""
    _override(pg_url, Flag.REPLAY_PACK, True)
    try:
        with psycopg.connect(conninfo(pg_url), autocommit=True) as conn:
            conn.execute("INSERT INTO flag_overrides (name, enabled, actor, reason) VALUES "
                         "('RETIRED_FLAG_ENABLED', true, '', '') ON CONFLICT DO NOTHING")
        probe, done = _run(["flags", "--json"], pg_url, tmp_path)
    finally:  # the session's database is shared by the other tests: every flag off again
        with psycopg.connect(conninfo(pg_url), autocommit=True) as conn:
            conn.execute("DELETE FROM flag_overrides WHERE name = ANY(%s)",
                         (["RETIRED_FLAG_ENABLED", Flag.REPLAY_PACK.value],))
    rows = {row["name"]: row for row in json.loads(done.stdout)}
    assert probe["code"] in (0, None), done.stderr
    assert rows[Flag.REPLAY_PACK.value] == {"name": Flag.REPLAY_PACK.value, "enabled": True, "source": "store"}
    assert set(rows) == {flag.value for flag in Flag}
    heavy = [m for m in probe["modules"] if m.split(".")[0] in ("sqlalchemy", "temporalio", "structlog",
                                                                 "opentelemetry", "rich")]
    assert heavy == []


def test_conninfo_drops_the_sqlalchemy_driver_name() -> None:
    """A SQLAlchemy URL becomes the libpq URI of the same database; a libpq URI is left as it is."""
    assert conninfo("postgresql+psycopg://u:p%40ss@h:5433/db?sslmode=require") == \
        "postgresql://u:p%40ss@h:5433/db?sslmode=require"
    assert conninfo("postgresql://u@h/db") == "postgresql://u@h/db"


def test_runs_list_prints_the_records_the_store_reads(pg_url: str, tmp_path: Path) -> None:
    """``jobforge runs list --json`` (one psycopg connection) prints the records ``Store.list_runs`` reads, newest
    first, within ``--limit``; the table in a pipe holds whole ids and template keys; neither imports
    SQLAlchemy, Temporal or structlog."""
    tenant = f"cli-{uuid.uuid4().hex[:8]}"
    template = "autopilot.jobforge.a_rather_long_template_key_for_the_table"

    async def seed() -> list[dict[str, Any]]:
        store = Store.from_url(pg_url)
        try:
            await store.tenants.create_tenant(tenant)
            for i in range(3):
                run_id = str(uuid.uuid4())
                await store.record_queued(tenant_id=tenant, template_key=template, workflow_id=f"wf-{run_id}",
                                          run_id=run_id, trace_id=f"trace-{i}", actor="test",
                                          idempotency_key=None, input_hash="h")
                if i == 0:
                    await store.finish_run(run_id, RunStatus.SUCCEEDED, {"ok": True}, "")
            return [r.model_dump(mode="json") for r in await store.list_runs(tenant, limit=2)]
        finally:
            await store.close()

    expected = asyncio.run(seed())
    probe, done = _run(["runs", "list", "--tenant", tenant, "--limit", "2", "--json"], pg_url, tmp_path)
    assert probe["code"] in (0, None), done.stderr
    assert json.loads(done.stdout) == expected and len(expected) == 2
    table_probe, table = _run(["runs", "list", "--tenant", tenant], pg_url, tmp_path)
    assert table_probe["code"] in (0, None), table.stderr
    assert all(run["run_id"] in table.stdout for run in expected) and template in table.stdout
    for modules in (probe["modules"], table_probe["modules"]):
        assert [m for m in modules if m.split(".")[0] in ("sqlalchemy", "temporalio", "structlog")] == []
