"""docker-compose.yml: valid against the Compose specification, and its JobForge commands work outside docker."""

from __future__ import annotations

import re
import shlex
import signal
import subprocess
import time
import urllib.request
from typing import Any

import pytest
import yaml

from shared.settings import Settings
from tests.support.procs import BIN, ROOT, env_with, free_port

pytestmark = pytest.mark.e2e

COMPOSE = ROOT / "docker-compose.yml"


def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def test_compose_file_is_valid_and_commits_no_secret() -> None:
    """The file validates against the Compose spec schema; secrets come from .env, which git ignores."""
    done = subprocess.run([str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    text = COMPOSE.read_text()
    assert "${POSTGRES_PASSWORD:?" in text and "password:" not in text.lower().replace("postgres_password", "")
    assert (ROOT / ".env.example").is_file() and ".env" in (ROOT / ".gitignore").read_text().split()
    services = compose()["services"]
    assert {"postgres", "temporal", "temporal-ui", "jobforge-migrate", "jobforge-api", "jobforge-worker"} <= set(
        services)
    worker = services["jobforge-worker"]
    assert "ports" not in worker and "container_name" not in worker, "the worker must scale with --scale"
    for name in ("postgres", "temporal", "jobforge-api"):
        assert "healthcheck" in services[name], name
    stages: set[str] = set()
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        words = line.split()
        if line.startswith("FROM ") and "AS" in words:
            stages.add(words[words.index("AS") + 1])
        if line.startswith("COPY "):
            flags = [w for w in words[1:-1] if w.startswith("--")]
            sources = [w for w in words[1:-1] if not w.startswith("--")]
            if any(flag.startswith("--from=") for flag in flags):  # a path inside an earlier build stage
                assert {flag.split("=", 1)[1] for flag in flags if flag.startswith("--from=")} <= stages, line
                continue
            for source in sources:
                assert (ROOT / source).exists(), f"Dockerfile copies {source}, which does not exist"
            for source in sources:
                assert source.split("/")[0] not in _dockerignored(), f"{source} is excluded by .dockerignore"


def _dockerignored() -> set[str]:
    """Top-level names .dockerignore keeps out of the build context."""
    path = ROOT / ".dockerignore"
    if not path.is_file():
        return set()
    return {line.strip().rstrip("/") for line in path.read_text().splitlines()
            if line.strip() and not line.startswith("#") and "/" not in line.strip().rstrip("/")
            and "*" not in line}


def service_env(settings: Settings, service: str | None = None, ports: dict[str, int] | None = None) -> dict[str, str]:
    """A compose service's JobForge environment, with this machine's services and free ports."""
    source = compose()["services"][service]["environment"] if service else compose()["x-jobforge-env"]
    env = {k: str(v) for k, v in source.items()}
    for key, value in list(env.items()):
        for old, new in (ports or {}).items():
            value = value.replace(old, str(new))
        # ${NAME:-default} as compose reads it with NAME unset in .env
        env[key] = re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", value.replace("0.0.0.0", "127.0.0.1"))
    env["JOBFORGE_TEMPORAL_ADDRESS"] = settings.temporal_address
    env["JOBFORGE_DATABASE_URL"] = settings.database_url_value() or ""
    env["JOBFORGE_HOME"] = str(settings.home)
    env["JOBFORGE_TASK_QUEUE"] = settings.task_queue
    env["JOBFORGE_AUTOPILOT_JOBS_ENABLED"] = "1"
    return env_with(env)


def argv(service: str, port: int | None = None) -> list[str]:
    command = compose()["services"][service]["command"]
    words = [str(w) for w in command]
    if port is not None:
        words = [w.replace("0.0.0.0", "127.0.0.1").replace("8000", str(port)) for w in words]
    if words[:2] == ["sh", "-c"]:
        return ["sh", "-c", words[2]]
    return words


def test_compose_commands_run_outside_docker(settings: Settings) -> None:
    """migrate, api and worker run their compose commands here: migrations + setup, /healthz, a job."""
    env = service_env(settings)
    env["PATH"] = f"{BIN}:{env.get('PATH', '')}"
    migrate = subprocess.run(argv("jobforge-migrate"), env=env, capture_output=True, text=True, timeout=120,
                             check=False)
    assert migrate.returncode == 0, migrate.stderr
    port, worker_metrics, api_metrics = free_port(), free_port(), free_port()
    api_env = service_env(settings, "jobforge-api", {"9465": api_metrics})
    worker_env = service_env(settings, "jobforge-worker", {"9464": worker_metrics})
    for extra in (api_env, worker_env):
        extra["PATH"] = env["PATH"]
    api = subprocess.Popen(argv("jobforge-api", port), env=api_env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE)
    worker = subprocess.Popen(argv("jobforge-worker"), env=worker_env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        probe = compose()["services"]["jobforge-api"]["healthcheck"]["test"]
        check = [w.replace("8000", str(port)) for w in probe[1:]]
        deadline = time.monotonic() + 30
        while True:
            ok = subprocess.run(check, env=env, capture_output=True, timeout=10, check=False).returncode == 0
            if ok or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert ok, "the API's compose healthcheck never passed"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as page:
            assert page.status == 200
        job = subprocess.run([str(BIN / "jobforge"), "jobs", "request", "autopilot.jobforge.healthcheck", "--tenant",
                              "compose", "--inputs", f'{{"task_queues": ["{settings.task_queue}"]}}', "--wait",
                              "--json"], env=env, capture_output=True, text=True, timeout=120, check=False)
        assert job.returncode == 0, job.stderr
        assert '"healthy": true' in job.stdout
        worker_probe = [w.replace("9464", str(worker_metrics))
                        for w in compose()["services"]["jobforge-worker"]["healthcheck"]["test"][1:]]
        assert subprocess.run(worker_probe, env=env, capture_output=True, timeout=10, check=False).returncode == 0
        with urllib.request.urlopen(f"http://127.0.0.1:{api_metrics}/metrics", timeout=5) as page:
            assert page.status == 200 and b"# TYPE" in page.read()
    finally:
        for proc in (api, worker):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        if api.stderr is not None:
            api.stderr.close()
    assert shlex.join(argv("jobforge-worker")) == "jobforge-worker"
