"""Canary secrets in inputs, a worker's environment and a step's output leak nowhere: not into log lines,
errors, run records, audit entries, files under the home directory, Temporal history (payloads
decoded), replay bundles, ``jobforge verify`` output, nor the server log of a private PostgreSQL that
logs every statement JobForge sends it."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from jobforge.errors import JobForgeError, SecretInInputs, UnstorableText
from jobforge.models import JobRun
from shared.flags import Flag
from shared.settings import Secret, Settings
from shared.store.migrate import upgrade
from shared.temporal import run_search_attributes
from shared.verify.models import VerifyReport
from tests.support.procs import ROOT, env_with, free_port, jobforge, wait_for
from tests.support.verify_repos import FAKE_AWS_KEY, FAKE_GITHUB_TOKEN, explicit_repo
from workers.runtime import open_runtime
from workers.stack import EmbeddedPostgres

pytestmark = pytest.mark.e2e

ECHO = "testing.jobforge.echo"
CANARIES = {
    "CANARY_AWS_KEY": "AKIA" + "CANARY0123456789",
    "CANARY_GITHUB": "ghp_" + "canary0123456789abcdefghijklmnopqrstu",
    "CANARY_PASSWORD": "plain-canary-password-7731",
    "CANARY_DB_URL": "postgresql://svc:canarypw7731@db.internal:5432/app",
    "CANARY_JWT": "eyJhbGciOiJIUzI1NiJ9.eyJjYW5hcnkiOiJ5ZXMifQ.c2lnbmF0dXJlY2FuYXJ5MTIz",
}
NEEDLES = [*CANARIES.values(), "canarypw7731"]


def readable(history_json: str) -> str:
    """A history's JSON with every payload's data decoded (the JSON carries it base64-encoded)."""
    decoded = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            data = node.get("data")
            if isinstance(data, str) and "metadata" in node:
                decoded.append(base64.b64decode(data).decode(errors="replace"))
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(json.loads(history_json))
    assert decoded, "no payload found in the history"
    return history_json + "\n" + "\n".join(decoded)


def leaks(text_: str) -> list[str]:
    return [needle for needle in NEEDLES if needle in text_]


async def test_canaries_appear_nowhere(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run, fail and refuse jobs carrying canaries; then scan every log line, error, record, file and history."""
    settings = settings.replace(template_modules=["tests.support.security_templates"])
    monkeypatch.setenv(Flag.AUDIT_LOGGING.value, "1")
    log_path = tmp_path / "worker.log"
    env = env_with({
        "JOBFORGE_TEMPORAL_ADDRESS": settings.temporal_address,
        "JOBFORGE_DATABASE_URL": settings.database_url_value() or "",
        "JOBFORGE_TASK_QUEUE": settings.task_queue, "JOBFORGE_HOME": str(settings.home),
        "JOBFORGE_TEMPLATE_MODULES": "tests.support.security_templates", "JOBFORGE_LOG_FORMAT": "json",
        "JOBFORGE_LOG_LEVEL": "DEBUG", "JOBFORGE_AUDIT_LOGGING_ENABLED": "1", **CANARIES,
    })
    with log_path.open("ab") as out:
        worker = subprocess.Popen(  # noqa: ASYNC220 - started once, before the async work it serves
            [sys.executable, "-m", "workers.worker"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL)
    tenant = f"canary-{uuid.uuid4().hex[:6]}"
    errors: list[str] = []
    workflow_ids: list[str] = []
    try:
        wait_for(lambda: "worker_started" in log_path.read_text(), 90, "the worker to start")
        async with open_runtime(settings) as rt:
            assert rt.temporal is not None
            await rt.gate.tenants.create_tenant(tenant)
            client = rt.client()
            # 1. secrets in inputs are refused before anything starts
            attempts = [{"note": f"deploy with {value}"} for name, value in CANARIES.items()
                        if name != "CANARY_PASSWORD"]
            attempts.append({"note": "x", "password": CANARIES["CANARY_PASSWORD"]})
            for inputs in attempts:
                with pytest.raises(SecretInInputs) as refused:
                    await client.request_job(tenant, ECHO, inputs)
                errors.append(refused.value.message + str(refused.value.details))
            # 2. a run whose step prints the environment, and one whose step fails with it in the message
            for fail in (False, True):
                handle = await client.request_job(tenant, ECHO, {"note": "hello", "fail": fail})
                workflow_ids.append(handle.workflow_id)
                try:
                    result = await client.result(handle)
                    errors.append(str(result.model_dump()))
                except JobForgeError as exc:
                    errors.append(f"{exc.code} {exc.message} {exc.details}")
            # 3. an operator's raw start through JobForge's Temporal client with a canary in its inputs
            raw_id = f"raw-canary-{uuid.uuid4().hex[:6]}"
            await rt.temporal.start_workflow(
                ECHO, JobRun(tenant_id=tenant, template_key=ECHO, inputs={"note": CANARIES["CANARY_GITHUB"]}),
                id=raw_id, task_queue=settings.task_queue, search_attributes=run_search_attributes(tenant, ECHO, "t"))
            workflow_ids.append(raw_id)
            # the client's codec redacted the input before it reached Temporal, so the run sees no secret
            raw_result = await rt.temporal.get_workflow_handle(raw_id).result()
            errors.append(str(raw_result))
            assert "[REDACTED]" in str(raw_result)

            histories = [readable((await rt.temporal.get_workflow_handle(w).fetch_history()).to_json())
                         for w in workflow_ids]
            async with rt.store.connection() as conn:
                rows = [str(tuple(r)) for table in ("runs", "audit_log") for r in await (await conn.execute(
                    sql.SQL("SELECT * FROM {} WHERE tenant_id = %s").format(sql.Identifier(table)),
                    (tenant,))).fetchall()]
    finally:
        worker.terminate()
        await asyncio.to_thread(worker.wait, 30)

    logs = log_path.read_text()
    assert "echo_output" in logs, "the step's log line is missing, so the scan would prove nothing"
    assert "[REDACTED]" in logs
    files = [p.read_text(errors="replace") for p in settings.home.rglob("*") if p.is_file() and
             p.name != "signing.key"] if settings.home.exists() else []
    for name, blob in [("worker log", logs), ("errors", "\n".join(errors)), ("histories", "\n".join(histories)),
                       ("store rows", "\n".join(rows)), ("home files", "\n".join(files))]:
        assert leaks(blob) == [], f"canary leaked into {name}"
    assert len(histories) == 3 and all(h for h in histories)


# -- secrets a repository's step prints, in every shape, through every surface -------------------

#: a value per shape; each is unique, so a hit names the surface and the shape that let it through
STEP_CANARIES = {
    "json": "cnry-json-5521", "json_nested": "cnry-nested-5522", "json_escaped": "cnry-escaped-5523",
    "yaml": "cnry-yaml-5524", "yaml_quoted": "cnry-yamlq-5525", "env": "cnry-env-5526",
    "export": "cnry-export-5527", "header": "cnry-header-5528", "bearer": "cnry-bearer-5529",
    "query": "cnry-query-5530", "flag": "cnry-flag-5531", "url": "cnry-url-5532",
    "repr": "cnry-repr-5533", "github": FAKE_GITHUB_TOKEN, "aws": FAKE_AWS_KEY,
}
#: refused at the gate (a NUL in the inputs): PostgreSQL must never see it, not even in an error's context
NUL_CANARY = "cnry-nul-5540"
STEP_OUTPUT = "\n".join([
    "STEP-OUTPUT-MARKER",
    json.dumps({"api_key": STEP_CANARIES["json"], "n": 1}),
    json.dumps({"config": {"db": {"password": STEP_CANARIES["json_nested"]}}}),
    json.dumps({"log": json.dumps({"client_secret": STEP_CANARIES["json_escaped"]})}),
    f"password: {STEP_CANARIES['yaml']}",
    f"  api_token: \"{STEP_CANARIES['yaml_quoted']}\"",
    f"DB_PASSWORD={STEP_CANARIES['env']}",
    f"export GITHUB_TOKEN={STEP_CANARIES['export']}",
    f"X-Api-Key: {STEP_CANARIES['header']}",
    f"Authorization: Bearer {STEP_CANARIES['bearer']}",
    f"GET /callback?code=1&access_token={STEP_CANARIES['query']}&state=x",
    f"deploy --password {STEP_CANARIES['flag']} --user ann",
    f"postgresql://app:{STEP_CANARIES['url']}@db:5432/app",
    f"{{'secret': '{STEP_CANARIES['repr']}'}}",
    f"pushed with {STEP_CANARIES['github']} and {STEP_CANARIES['aws']}",
]) + "\n"


async def private_postgres_logging_every_statement(root: Path) -> EmbeddedPostgres:
    """A private PostgreSQL whose server log records every statement with its parameters, and the
    statement and parameters of every error: whatever JobForge sends it lands in a file we can read."""
    pg = EmbeddedPostgres(root / "pgdata", free_port())
    await asyncio.to_thread(pg.start)
    async with await psycopg.AsyncConnection.connect(host="127.0.0.1", port=pg.port, user="postgres",
                                                     dbname="postgres", autocommit=True) as conn:
        for name, value in (("log_statement", "all"), ("log_parameter_max_length", "-1"),
                            ("log_parameter_max_length_on_error", "-1"), ("log_min_error_statement", "error")):
            await conn.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value)))
        await conn.execute("SELECT pg_reload_conf()")
    return pg


async def test_step_output_secrets_reach_no_surface(settings: Settings, repos: Path, stack_tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A verify step prints secrets as JSON (plain, nested, escaped inside a string), YAML, .env,
    headers, a query string, a flag, a URL, a repr and known token formats: none of them is in the
    step logs in the artifact store, ``jobforge verify`` output, the worker's log, Temporal history,
    the replay bundle, the store's rows, or the PostgreSQL server log of everything JobForge sent."""
    flags = {Flag.AUTOPILOT_JOBS.value: "1", Flag.VERIFY_PACK.value: "1", Flag.REPLAY_PACK.value: "1",
             Flag.AUDIT_LOGGING.value: "1", Flag.SECURITY_VALIDATION.value: "1", Flag.MANIFESTS.value: "1"}
    for flag, value in flags.items():
        monkeypatch.setenv(flag, value)
    pg = await private_postgres_logging_every_statement(stack_tmp_path)
    worker: subprocess.Popen[bytes] | None = None
    try:
        db_url = pg.url
        await asyncio.to_thread(upgrade, db_url)
        private = settings.replace(database_url=Secret(db_url), verify_allowed_roots=[repos])
        repo = explicit_repo(repos, "leaky", {"lint": "true", "test": "cat out.txt"}, {"out.txt": STEP_OUTPUT})
        env = env_with({
            "JOBFORGE_TEMPORAL_ADDRESS": private.temporal_address, "JOBFORGE_DATABASE_URL": db_url,
            "JOBFORGE_TASK_QUEUE": private.task_queue, "JOBFORGE_HOME": str(private.home),
            "JOBFORGE_VERIFY_ALLOWED_ROOTS": str(repos), "JOBFORGE_LOG_FORMAT": "json", "JOBFORGE_LOG_LEVEL": "DEBUG",
            "JOBFORGE_HISTORY_CAPTURE_INTERVAL_SECONDS": "0.2", "JOBFORGE_WORKER_GRACEFUL_SHUTDOWN_SECONDS": "1",
            **flags,
        })
        created = await asyncio.to_thread(jobforge, "tenants", "create", "demo", env=env)  # verify's tenant
        assert created.returncode == 0, created.stderr
        log_path = stack_tmp_path / "worker.log"
        with log_path.open("ab") as out:
            worker = subprocess.Popen(  # noqa: ASYNC220 - started once, before the async work it serves
                [sys.executable, "-m", "workers.worker"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL)
        await asyncio.to_thread(wait_for, lambda: "worker_started" in log_path.read_text(), 60, "the worker")
        verified = await asyncio.to_thread(jobforge, "verify", str(repo), "--json", env=env, timeout=300)
        assert verified.returncode == 0, verified.stdout[-3000:] + verified.stderr[-2000:]
        report = VerifyReport.model_validate(json.loads(verified.stdout))
        plain = await asyncio.to_thread(jobforge, "verify", str(repo), env=env, timeout=300)  # the text report
        async with open_runtime(private) as rt:
            assert rt.temporal is not None
            with pytest.raises(UnstorableText):  # an existing tenant's request: the gate gets to the text check
                await rt.client().request_job("demo", "autopilot.jobforge.healthcheck",
                                              {"task_queues": [f"a\u0000b password={NUL_CANARY}"]})
            record = await rt.store.get_run(report.run_id)
            history = readable((await rt.temporal.get_workflow_handle(record.workflow_id).fetch_history()).to_json())
            replay_store = rt.store.replay
            deadline = time.monotonic() + 60
            while await replay_store.history(report.run_id) is None:  # captured by the worker once closed
                assert time.monotonic() < deadline, log_path.read_text()[-2000:]
                await asyncio.sleep(0.1)
            async with rt.store.connection() as conn:
                tables = [r[0] for r in await (await conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).fetchall()]
                rows = [str(tuple(r)) for table in tables for r in await (await conn.execute(
                    sql.SQL("SELECT * FROM {}").format(sql.Identifier(table)))).fetchall()]
        bundle = stack_tmp_path / "bundle"
        exported = await asyncio.to_thread(jobforge, "replay", "export", report.run_id, "--out", str(bundle), env=env)
        assert exported.returncode == 0, exported.stderr
    finally:
        if worker is not None:
            worker.terminate()
            await asyncio.to_thread(worker.wait, 30)
        await asyncio.to_thread(pg.stop)

    def read_all(root: Path) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(root.rglob("*")) if p.is_file()
                         and p.name != "signing.key")

    step_logs = read_all(private.artifact_root)
    assert "STEP-OUTPUT-MARKER" in step_logs and "[REDACTED]" in step_logs, "the step's log is not where we look"
    surfaces = {
        "step logs (artifact store)": step_logs, "jobforge verify --json": verified.stdout + verified.stderr,
        "jobforge verify": plain.stdout + plain.stderr, "worker log": log_path.read_text(errors="replace"),
        "Temporal history": history, "replay bundle": read_all(bundle), "store rows": "\n".join(rows),
        "home files": read_all(private.home), "PostgreSQL server log": (pg.pgdata / "server.log").read_text(
            errors="replace"),
    }
    assert "STEP-OUTPUT-MARKER" in surfaces["PostgreSQL server log"] or "stdout_tail" in surfaces[
        "PostgreSQL server log"], "the server log does not record statements: the scan would prove nothing"
    leaked = {surface: [shape for shape, value in {**STEP_CANARIES, "nul": NUL_CANARY}.items() if value in blob]
              for surface, blob in surfaces.items()}
    assert {surface: shapes for surface, shapes in leaked.items() if shapes} == {}
