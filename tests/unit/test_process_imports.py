"""What the stack's processes import to start: what they do not need with every feature at its default stays out
(docs/performance.md, start-up)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

#: what tracing imports when it is on (FastAPI imports OpenTelemetry's API itself, so that is not listed)
TRACING = ("opentelemetry.sdk", "opentelemetry.exporter", "temporalio.contrib.opentelemetry")


def _imported(module: str, then: str = "") -> set[str]:
    """Every module a fresh interpreter holds after importing ``module`` (and running ``then``)."""
    probe = f"import json, sys, {module}\n{then}\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def _of(modules: set[str], packages: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in packages))


@pytest.mark.parametrize(("module", "forbidden"), [
    # the worker checks the schema against shared.store.schema.HEAD_REVISION, not Alembic's scripts; tracing
    # (OpenTelemetry's SDK and Temporal's interceptor for it) is imported when JOBFORGE_OTLP_ENDPOINT turns it on
    # the verify pack's HTTP client and parsers (httpx, PyYAML, node-semver) load when a verify step uses them
    ("workers.worker", ("alembic", "sqlalchemy", "httpx", "yaml", "nodesemver", *TRACING)),
    # the API validates a key rotation's recipient key for shape (jobforge.sealed_key); sealing is the worker's;
    # Temporal's worker module is the workers' (the activity interceptor, the replay service's Replayer)
    ("workers.api", ("alembic", "sqlalchemy", "cryptography", "temporalio.worker", *TRACING)),
    # `jobforge dev` launches the Temporal dev server, the workers and the API before it imports psycopg (to
    # check the database while they import); Temporal's SDK is for the processes it launches, not for it
    ("workers.dev", ("temporalio", "psycopg", "alembic", "sqlalchemy", "fastapi", "opentelemetry")),
])
def test_a_process_starts_without_what_it_does_not_use(module: str, forbidden: tuple[str, ...]) -> None:
    """Importing a process's entry point leaves the packages it does not use unimported."""
    modules = _imported(module)
    assert module in modules
    assert _of(modules, forbidden) == []


def test_the_api_builds_its_app_without_the_console() -> None:
    """The console (Jinja2, its pages and routes) is built on its first request to /ui, not with the API's app."""
    modules = _imported("workers.api", "from shared.settings import Secret\nfrom shared.settings import Settings\n"
                        "workers.api.create_app(Settings(database_url=Secret('postgresql://nobody@127.0.0.1:1/x')))")
    assert "workers.console" in modules
    assert _of(modules, ("workers.console.app", "jinja2")) == []
