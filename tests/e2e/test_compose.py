"""docker-compose.yml: valid against the Compose specification, the production invariants (pinned
images, an explicit Temporal schema job, health checks, start order, volumes, ports, a scalable worker),
its one-shot scripts' behaviour, and its JobForge commands run outside docker."""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import signal
import subprocess
import time
import tomllib
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from shared.settings import Settings
from tests.support.compose import InterpolationError, Published, collisions, interpolate, load, published_ports, resolve
from tests.support.procs import BIN, ROOT, env_with, free_port

pytestmark = pytest.mark.e2e

COMPOSE = ROOT / "docker-compose.yml"
SANDBOX_OVERRIDE = ROOT / "deploy" / "compose.sandbox.yml"
SCHEMA_DIR = ROOT / "tests" / "support" / "compose_spec"
SCHEMA_SHA256 = "d549057ebc2925f39f62799eab0db7b9e2c18b35b6c00595199116da3ed10e64"
#: what `docker compose up` needs from .env; every other variable has a default
REQUIRED_ENV = {"POSTGRES_PASSWORD": "example-password"}
#: an exact version tag (at least major.minor, optionally a suffix such as -trixie), optionally a digest
PINNED = re.compile(r"^(?P<repo>[a-z0-9][a-z0-9._/-]*):(?P<tag>\d+\.\d+[A-Za-z0-9._-]*)"
                    r"(?P<digest>@sha256:[0-9a-f]{64})?$")


def compose() -> dict[str, Any]:
    return load(COMPOSE)


def resolved(env: dict[str, str] | None = None) -> dict[str, Any]:
    """docker-compose.yml as compose reads it with .env.example's required variables (and ``env``) set."""
    data = resolve(compose(), {**REQUIRED_ENV, **(env or {})})
    assert isinstance(data, dict)
    return data


def services() -> dict[str, Any]:
    found = resolved()["services"]
    assert isinstance(found, dict)
    return found


def one_shots(all_services: dict[str, Any]) -> set[str]:
    return {name for name, svc in all_services.items() if svc.get("restart") == "no"}


def compose_spec() -> dict[str, Any]:
    raw = (SCHEMA_DIR / "compose-spec.json").read_bytes()
    assert hashlib.sha256(raw).hexdigest() == SCHEMA_SHA256, "the vendored schema changed: update its README"
    schema = json.loads(raw)
    assert isinstance(schema, dict)
    return schema


def test_compose_files_validate_against_the_compose_spec() -> None:
    """docker-compose.yml and the sandbox override validate against the vendored Compose spec schema,
    as written and after interpolation; a broken file does not (the check can fail)."""
    validator = jsonschema.Draft202012Validator(compose_spec())
    for path in (COMPOSE, SANDBOX_OVERRIDE):
        raw = load(path)
        for document in (raw, resolve(raw, REQUIRED_ENV)):
            errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]
            assert not errors, f"{path.name}: {errors}"
    broken = compose()
    broken["services"]["temporal"]["depends_on"]["temporal-schema"]["condition"] = "service_finished"
    broken["services"]["jobforge-worker"]["healthcheck"]["interval"] = 15
    assert len(list(validator.iter_errors(broken))) >= 2


def test_secrets_come_from_env_which_git_ignores() -> None:
    """No secret in the file: every password, token or key is a variable from .env (git ignores it), the
    database password a required one, so compose refuses to start without it."""
    raw = compose()
    secret = re.compile(r"PASSWORD|PWD|TOKEN|SECRET|SIGNING_KEY")
    found = 0
    for blocks in ([raw["x-jobforge-env"], raw["x-temporal-db"]],
                   [svc.get("environment") or {} for svc in raw["services"].values()]):
        for env in blocks:
            for key, value in env.items():
                if secret.search(key):
                    found += 1
                    assert re.fullmatch(r"\$\{[A-Z0-9_]+(:[?-][^}]*)?\}", str(value)), f"{key}: {value!r}"
    assert found >= 4
    assert "${POSTGRES_PASSWORD:?" in raw["x-jobforge-env"]["JOBFORGE_DATABASE_URL"]
    with pytest.raises(InterpolationError, match="POSTGRES_PASSWORD"):
        resolve(compose(), {})
    assert (ROOT / ".env.example").is_file() and ".env" in (ROOT / ".gitignore").read_text().split()


def test_every_variable_is_in_env_example() -> None:
    """Each variable the compose files read is listed (with its default or a placeholder) in .env.example."""
    documented = {line.split("=", 1)[0] for line in (ROOT / ".env.example").read_text().splitlines()
                  if "=" in line and not line.startswith("#")}
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", COMPOSE.read_text() + SANDBOX_OVERRIDE.read_text()))
    assert used and used <= documented, sorted(used - documented)


def test_every_image_is_pinned_and_none_is_auto_setup() -> None:
    """Every image has an exact version tag; Docker Official Images also a digest; JobForge's own is tagged
    with the project's version; Temporal runs the server image, never the development-only auto-setup."""
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for name, svc in services().items():
        image = svc.get("image")
        assert image, f"{name} has no image"
        assert "auto-setup" not in image, f"{name}: {image} is Temporal's development image"
        if "build" in svc:
            assert image == f"jobforge:{version}", f"{name}: {image} (pyproject version {version})"
            continue
        match = PINNED.match(image)
        assert match, f"{name}: {image} is not pinned to an exact version"
        if "/" not in match["repo"]:
            assert match["digest"], f"{name}: {image} is a Docker Official Image: pin its digest too"
    assert services()["temporal"]["image"].startswith("temporalio/server:")
    for loose in ("postgres:16", "postgres:latest", "temporalio/ui:latest", "temporalio/server", "node:lts-slim"):
        assert not PINNED.match(loose), loose


def test_long_running_services_have_health_checks_and_one_shots_gate_the_start() -> None:
    """A service that keeps running has a health check; a one-shot (restart "no") is something another
    service waits for to complete successfully; every depends_on names a condition that can hold."""
    all_services = services()
    shots = one_shots(all_services)
    assert shots == {"temporal-schema", "temporal-namespace", "jobforge-migrate"}
    awaited: set[str] = set()
    for name, svc in all_services.items():
        if name not in shots:
            assert "healthcheck" in svc and svc["healthcheck"].get("test"), f"{name} has no health check"
            assert svc.get("restart", "unless-stopped") != "no", name
        for target, spec in (svc.get("depends_on") or {}).items():
            assert isinstance(spec, dict), f"{name} -> {target}: use the long form with a condition"
            condition = spec.get("condition")
            if target in shots:
                assert condition == "service_completed_successfully", f"{name} -> {target}: {condition}"
                awaited.add(target)
            else:
                assert condition == "service_healthy", f"{name} -> {target}: {condition}"
                assert "healthcheck" in all_services[target], f"{name} waits for {target}'s health, it has none"
    assert awaited == shots


def test_temporal_schema_is_an_explicit_job_the_server_waits_for() -> None:
    """temporal-schema runs deploy/temporal-schema.sh in the admin-tools image (temporal-sql-tool on
    PostgreSQL) with the connection the script requires; the server starts only after it succeeded, and
    its namespace job, JobForge's migrations and so the API and workers only after that."""
    all_services = services()
    job = all_services["temporal-schema"]
    assert job["image"].startswith("temporalio/admin-tools:")
    assert job["entrypoint"] == ["/bin/sh", "/deploy/temporal-schema.sh"]
    assert "./deploy/temporal-schema.sh:/deploy/temporal-schema.sh:ro" in job["volumes"]
    script = (ROOT / "deploy" / "temporal-schema.sh").read_text()
    required = set(re.findall(r"\$\{(SQL_[A-Z]+):\?", script))
    assert required == {"SQL_PLUGIN", "SQL_HOST", "SQL_PORT", "SQL_USER", "SQL_PASSWORD"}
    assert required <= set(job["environment"]) and job["environment"]["SQL_PLUGIN"] == "postgres12"
    assert job["environment"]["SQL_HOST"] == "postgres"
    assert job["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    server = all_services["temporal"]
    assert server["depends_on"]["temporal-schema"] == {"condition": "service_completed_successfully"}
    assert server["environment"]["DB"] == "postgres12" and server["environment"]["POSTGRES_SEEDS"] == "postgres"
    dynamic = server["environment"]["DYNAMIC_CONFIG_FILE_PATH"]
    assert f"./deploy/temporal-dynamicconfig.yaml:{dynamic}:ro" in server["volumes"]
    assert yaml.safe_load((ROOT / "deploy" / "temporal-dynamicconfig.yaml").read_text()) == {}
    assert "temporal operator cluster health --address temporal:7233" in server["healthcheck"]["test"][1]
    chain = [("temporal-namespace", "temporal"), ("jobforge-migrate", "temporal-namespace"),
             ("jobforge-api", "jobforge-migrate"), ("jobforge-worker", "jobforge-migrate")]
    for service, first in chain:
        assert first in all_services[service]["depends_on"], f"{service} must wait for {first}"
    namespace = all_services["temporal-namespace"]
    assert namespace["entrypoint"] == ["/bin/sh", "/deploy/temporal-namespace.sh"]
    assert namespace["environment"]["TEMPORAL_NAMESPACE"] == compose()["x-jobforge-env"]["JOBFORGE_TEMPORAL_NAMESPACE"]


def test_bind_mounts_exist() -> None:
    """Every file compose mounts from the repository exists (the scripts, the init SQL)."""
    for name, svc in services().items():
        for volume in svc.get("volumes") or []:
            source = str(volume).split(":", 1)[0]
            if source.startswith("./"):
                assert (ROOT / source).is_file(), f"{name} mounts {source}, which does not exist"


def test_named_volumes_hold_the_state() -> None:
    """PostgreSQL's data, JobForge's home (artifacts, shared by the API and the workers) and the verify
    toolchain cache live on named volumes declared at the top level, at the paths the processes read."""
    data = resolved()
    all_services = data["services"]
    declared = set(data["volumes"])
    assert {"pgdata", "jobforge-data", "verify-cache"} <= declared
    mounts = {name: dict(str(v).split(":")[:2] for v in svc.get("volumes") or [] if not str(v).startswith("./"))
              for name, svc in all_services.items()}
    for name, named in mounts.items():
        assert set(named) <= declared, f"{name} uses an undeclared volume: {set(named) - declared}"
    assert mounts["postgres"]["pgdata"] == "/var/lib/postgresql/data"
    home = data["x-jobforge-env"]["JOBFORGE_HOME"]
    for name in ("jobforge-migrate", "jobforge-api", "jobforge-worker"):
        assert mounts[name]["jobforge-data"] == home, name
    worker = all_services["jobforge-worker"]
    assert mounts["jobforge-worker"]["verify-cache"] == worker["environment"]["JOBFORGE_VERIFY_CACHE_DIR"]


def test_host_ports_do_not_collide() -> None:
    """The published host ports (API 8000, Temporal UI 8080, Temporal gRPC on loopback 7233) are distinct
    with the defaults and with the sandbox override; the check finds a collision when one is made."""
    ports = published_ports(services())
    assert {(p.service, p.host_port) for p in ports} == {
        ("jobforge-api", 8000), ("temporal-ui", 8080), ("temporal", 7233)}
    assert not collisions(ports)
    loopback = {p.service for p in ports if p.host_ip == "127.0.0.1"}
    assert loopback == {"temporal", "temporal-ui"}, "Temporal has no authentication: publish it on loopback"
    api = next(p for p in ports if p.service == "jobforge-api")
    assert f"--port {api.target}" in " ".join(services()["jobforge-api"]["command"])
    clash = published_ports(resolved({"JOBFORGE_API_HOST_PORT": "8080"})["services"])
    assert [{a.service, b.service} for a, b in collisions(clash)] == [{"jobforge-api", "temporal-ui"}]
    assert collisions([Published("a", "", 8080, 8080, "tcp"), Published("b", "127.0.0.1", 8080, 80, "tcp")])
    assert not collisions([Published("a", "127.0.0.1", 8080, 1, "tcp"), Published("b", "127.0.0.2", 8080, 1, "tcp")])


def test_worker_scales_with_scale() -> None:
    """`docker compose up --scale jobforge-worker=N`: the worker has no container name, host port or
    hostname, and its replicas share the volumes; no service fixes a container name."""
    all_services = services()
    worker = all_services["jobforge-worker"]
    assert not {"ports", "container_name", "hostname"} & set(worker)
    assert not any("container_name" in svc for svc in all_services.values())
    assert "--scale jobforge-worker=" in (ROOT / "README.md").read_text()


def test_sandbox_override_loosens_only_the_worker_and_requires_the_sandbox() -> None:
    """deploy/compose.sandbox.yml lets bubblewrap make its namespaces in jobforge-worker only, and makes
    an unsandboxed step a refused run rather than a silent fallback."""
    override = load(SANDBOX_OVERRIDE)
    assert set(override["services"]) == {"jobforge-worker"}
    worker = override["services"]["jobforge-worker"]
    assert set(worker["security_opt"]) == {"seccomp=unconfined", "apparmor=unconfined", "systempaths=unconfined"}
    assert worker["environment"]["JOBFORGE_VERIFY_SANDBOX"] == "required"
    docs = (ROOT / "docs" / "operations.md").read_text()
    assert "## Sandboxing verify steps" in docs and "deploy/compose.sandbox.yml" in docs


def test_interpolation_follows_compose() -> None:
    """The interpolation the checks rely on: defaults, required values, alternatives, escapes, nesting."""
    env = {"SET": "v", "EMPTY": ""}
    assert interpolate("${SET:-d} ${UNSET:-d} ${EMPTY:-d} ${EMPTY-d} $SET $$SET", env) == "v d d  v $SET"
    assert interpolate("${UNSET:-${SET:-x}}:${SET:+alt}:${EMPTY:+alt}:${EMPTY+alt}", env) == "v:alt::alt"
    with pytest.raises(InterpolationError, match="EMPTY: no"):
        interpolate("${EMPTY:?no}", env)
    assert interpolate("${EMPTY?no}", env) == ""
    with pytest.raises(InterpolationError):
        interpolate("${SET", env)


# -- the one-shot scripts ---------------------------------------------------------------------------


def test_shell_passes_shellcheck(tmp_path: Path) -> None:
    """The compose stack's scripts and its CMD-SHELL health checks are POSIX sh that shellcheck (its PyPI
    package's binary) finds nothing in; a script with an unquoted expansion does not pass."""
    shellcheck = [str(BIN / "shellcheck"), "--shell=sh", "--severity=style", "--format=gcc"]
    scripts = sorted((ROOT / "deploy").glob("*.sh"))
    assert {p.name for p in scripts} >= {"temporal-schema.sh", "temporal-namespace.sh"}
    for name, svc in services().items():
        test = (svc.get("healthcheck") or {}).get("test") or []
        if test[:1] == ["CMD-SHELL"]:
            path = tmp_path / f"{name}-healthcheck.sh"
            path.write_text(f"#!/bin/sh\n{test[1]}\n")
            scripts.append(path)
    done = subprocess.run([*shellcheck, *map(str, scripts)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    careless = tmp_path / "careless.sh"
    careless.write_text("#!/bin/sh\nrm -rf $1/data\n")
    bad = subprocess.run([*shellcheck, str(careless)], capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode != 0 and "SC2086" in bad.stdout




FAKE_SQL_TOOL = """#!/bin/sh
# temporal-sql-tool as far as deploy/temporal-schema.sh uses it: --db NAME then create / setup-schema /
# update-schema; databases are directories under $FAKE_STATE; every call is logged
echo "$SQL_PLUGIN $SQL_HOST:$SQL_PORT $SQL_USER $*" >> "$FAKE_STATE/calls"
[ "$1" = "--db" ] || { echo "unexpected arguments: $*" >&2; exit 2; }
db=$2; shift 2
case "$1" in
  create)
    [ -n "${FAKE_DOWN:-}" ] && { echo "dial tcp 10.0.0.5:5432: connect: connection refused" >&2; exit 1; }
    [ -d "$FAKE_STATE/$db" ] && { echo "pq: database \"$db\" already exists" >&2; exit 1; }
    mkdir "$FAKE_STATE/$db" ;;
  setup-schema) [ -d "$FAKE_STATE/$db" ] || { echo "no database $db" >&2; exit 1; } ;;
  update-schema) [ -d "$3" ] || { echo "no schema dir $3" >&2; exit 1; }; echo "$3" > "$FAKE_STATE/$db/version" ;;
  *) echo "unknown command $1" >&2; exit 2 ;;
esac
"""


def run_schema_job(tmp_path: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    job = services()["temporal-schema"]
    env = {"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", "FAKE_STATE": str(tmp_path / "state"),
           "TEMPORAL_SCHEMA_DIR": str(tmp_path / "schema"), **job["environment"], **extra}
    return subprocess.run(["sh", str(ROOT / "deploy" / "temporal-schema.sh")], env=env, capture_output=True,
                          text=True, timeout=30, check=False)


def test_schema_job_creates_and_upgrades_both_stores_and_runs_again(tmp_path: Path) -> None:
    """With the compose job's environment the script creates `temporal` and `temporal_visibility`, sets
    up versioning and applies each store's versioned schema; run again it keeps the databases and
    upgrades; a database server that cannot be reached fails it before any schema command."""
    (tmp_path / "bin").mkdir()
    tool = tmp_path / "bin" / "temporal-sql-tool"
    tool.write_text(FAKE_SQL_TOOL)
    tool.chmod(0o755)
    for store in ("temporal", "visibility"):
        (tmp_path / "schema" / store / "versioned").mkdir(parents=True)
    (tmp_path / "state").mkdir()
    first = run_schema_job(tmp_path)
    assert first.returncode == 0, first.stderr
    assert "created database temporal\n" in first.stdout and "created database temporal_visibility" in first.stdout
    calls = (tmp_path / "state" / "calls").read_text().splitlines()
    schema = tmp_path / "schema"
    assert calls == [
        "postgres12 postgres:5432 postgres --db temporal create",
        "postgres12 postgres:5432 postgres --db temporal setup-schema -v 0.0",
        f"postgres12 postgres:5432 postgres --db temporal update-schema -d {schema}/temporal/versioned",
        "postgres12 postgres:5432 postgres --db temporal_visibility create",
        "postgres12 postgres:5432 postgres --db temporal_visibility setup-schema -v 0.0",
        f"postgres12 postgres:5432 postgres --db temporal_visibility update-schema -d {schema}/visibility/versioned",
    ]
    again = run_schema_job(tmp_path)
    assert again.returncode == 0, again.stderr
    assert "database temporal exists" in again.stdout and "database temporal_visibility exists" in again.stdout
    assert len((tmp_path / "state" / "calls").read_text().splitlines()) == 12

    (tmp_path / "state" / "calls").unlink()
    down = run_schema_job(tmp_path, FAKE_DOWN="1")
    assert down.returncode != 0 and "connection refused" in down.stderr
    assert "cannot create database temporal" in down.stderr
    assert (tmp_path / "state" / "calls").read_text().splitlines() == [
        "postgres12 postgres:5432 postgres --db temporal create"]
    missing = run_schema_job(tmp_path, TEMPORAL_SCHEMA_DIR=str(tmp_path / "nowhere"))
    assert missing.returncode != 0 and "no schema directory" in missing.stderr
    for name in ("SQL_PASSWORD", "SQL_PORT"):
        unset = run_schema_job(tmp_path, **{name: ""})
        assert unset.returncode != 0 and name in unset.stderr


def run_namespace_job(address: str, namespace: str, **extra: str) -> subprocess.CompletedProcess[str]:
    job = services()["temporal-namespace"]
    env = env_with({**job["environment"], "TEMPORAL_ADDRESS": address, "TEMPORAL_NAMESPACE": namespace, **extra})
    env["PATH"] = f"{BIN}:{env.get('PATH', '')}"
    return subprocess.run(["sh", str(ROOT / "deploy" / "temporal-namespace.sh")], env=env, capture_output=True,
                          text=True, timeout=120, check=False)


def test_namespace_job_registers_the_namespace_once(temporal_address: str) -> None:
    """Against a real Temporal server (the dev server) the script registers the namespace with the
    compose job's retention, leaves it alone the second time, and fails naming the address when no
    server answers."""
    namespace = f"compose-{uuid.uuid4().hex[:10]}"
    first = run_namespace_job(temporal_address, namespace)
    assert first.returncode == 0, first.stderr
    assert f"namespace {namespace} created (retention 168h)" in first.stdout
    described = subprocess.run([str(BIN / "temporal"), "operator", "namespace", "describe", "--address",
                                temporal_address, "--namespace", namespace, "--output", "json"],
                               capture_output=True, text=True, timeout=60, check=True)
    config = json.loads(described.stdout)["config"]
    assert config["workflowExecutionRetentionTtl"] == f"{168 * 3600}s"
    second = run_namespace_job(temporal_address, namespace)
    assert second.returncode == 0 and f"namespace {namespace} exists" in second.stdout
    dead = f"127.0.0.1:{free_port()}"
    failed = run_namespace_job(dead, namespace, TEMPORAL_NAMESPACE_ATTEMPTS="2",
                               TEMPORAL_NAMESPACE_PAUSE_SECONDS="0")
    assert failed.returncode != 0
    assert f"cannot register namespace {namespace} at {dead} after 2 attempts" in failed.stderr


# -- JobForge's services, run outside docker ----------------------------------------------------------


def service_env(settings: Settings, service: str | None = None, ports: dict[str, int] | None = None) -> dict[str, str]:
    """A compose service's JobForge environment, with this machine's services and free ports."""
    data = resolved()
    source = data["services"][service]["environment"] if service else data["x-jobforge-env"]
    env = {k: str(v) for k, v in source.items()}
    for key, value in list(env.items()):
        for old, new in (ports or {}).items():
            value = value.replace(old, str(new))
        env[key] = value.replace("0.0.0.0", "127.0.0.1")
    if "JOBFORGE_VERIFY_CACHE_DIR" in env:  # a volume in compose; here a directory of the test's own
        env["JOBFORGE_VERIFY_CACHE_DIR"] = str(settings.home / "verify-cache")
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
    """migrate, api and worker run their compose commands here: migrations + setup, /healthz, the console
    at /ui (its sign-in page), a job, both metrics endpoints the health checks and Prometheus read."""
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
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ui", timeout=5) as page:  # follows to sign-in
            assert page.status == 200 and b"<form" in page.read()
        made = subprocess.run([str(BIN / "jobforge"), "tenants", "create", "compose"], env=env, capture_output=True,
                              text=True, timeout=60, check=False)
        assert made.returncode == 0, made.stderr
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
