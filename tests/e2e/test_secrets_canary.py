"""Canary secrets in inputs, a worker's environment and a step's output leak nowhere: not into log lines,
errors, run records, audit entries, files under the home directory, nor any Temporal history."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text

from shared.errors import JobForgeError, SecretInInputs
from shared.flags import Flag
from shared.models import JobRun
from shared.settings import Settings
from shared.temporal import run_search_attributes
from tests.support.procs import ROOT, env_with, wait_for
from workers.runtime import open_runtime

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


def leaks(text_: str) -> list[str]:
    return [needle for needle in NEEDLES if needle in text_]


async def test_canaries_appear_nowhere(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run, fail and refuse jobs carrying canaries; then scan every log line, error, record, file and history."""
    settings = settings.model_copy(update={"template_modules": ["tests.support.security_templates"]})
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
        wait_for(lambda: "worker_started" in log_path.read_text(), 30, "the worker to start")
        async with open_runtime(settings) as rt:
            assert rt.temporal is not None
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

            histories = [(await rt.temporal.get_workflow_handle(w).fetch_history()).to_json() for w in workflow_ids]
            async with rt.store.engine.connect() as conn:
                rows = [str(tuple(r)) for table in ("runs", "audit_log") for r in
                        (await conn.execute(text(f"SELECT * FROM {table} WHERE tenant_id = :t"), {"t": tenant}))]
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
