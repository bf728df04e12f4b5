"""The SDK (sdk/, distribution `jobforge`) installed alone into a fresh virtualenv: its wheel needs only
httpx + pydantic (temporalio under the `temporal` extra, cryptography under `keys`), none of the server's
packages come with it, and the integration examples run with that interpreter against a live `jobforge-api`
+ worker."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from temporalio.testing import WorkflowEnvironment

from jobforge.errors import InvalidRequest, UnknownTenant
from jobforge.temporal import TemporalJobForgeClient
from tests.support.procs import ROOT, api_and_worker, env_with, free_port, jobforge

pytestmark = pytest.mark.e2e

#: the integration examples, each of which imports nothing but the SDK
EXAMPLES = ("_common.py", "readylayer_verify.py", "settler_contract_signed.py", "aias_agent_completed.py",
            "keys_rotation.py")
#: the scopes each example's docstring names for its key
SCOPES = {"settler_contract_signed": "triggers:write,jobs:request,events:write,events:read,runs:read",
          "aias_agent_completed": "triggers:*,jobs:request,events:*",
          "keys_rotation": "tokens:issue,keys:rotate,runs:read"}


def _run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL, check=False,
                          **kwargs)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from a copy of sdk/'s tracked files: setuptools' in-tree build/ directory (left by an earlier
    build) could otherwise still package a module deleted from sdk/jobforge."""
    out = tmp_path_factory.mktemp("sdk-wheel")
    tracked = _run(["git", "-C", str(ROOT), "ls-files", "-z", "sdk"])
    assert tracked.returncode == 0, tracked.stderr
    source = tmp_path_factory.mktemp("sdk-source")
    for name in filter(None, tracked.stdout.split("\0")):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name)
    built = _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(source / "sdk")])
    assert built.returncode == 0, built.stderr
    (path,) = out.glob("jobforge-*.whl")
    return path


@pytest.fixture(scope="module")
def sdk_python(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv (no system site-packages) with the SDK wheel and its `keys` extra, and what pip
    resolves for them."""
    home = tmp_path_factory.mktemp("sdk-venv")
    venv.EnvBuilder(with_pip=True, clear=True).create(home / "venv")
    python = home / "venv" / "bin" / "python"
    installed = _run([str(python), "-m", "pip", "install", "-q", f"{wheel}[keys]"])
    assert installed.returncode == 0, installed.stderr
    return python


def test_the_wheel_depends_on_httpx_and_pydantic_only(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        (metadata,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        lines = archive.read(metadata).decode().splitlines()
        packages = {n.split("/")[0] for n in archive.namelist() if not n.split("/")[0].endswith(".dist-info")}
    requirements = [Requirement(line.split(":", 1)[1].strip()) for line in lines if line.startswith("Requires-Dist:")]
    plain = {r.name for r in requirements if r.marker is None}

    def extra(name: str) -> set[str]:
        return {r.name for r in requirements if r.marker is not None and r.marker.evaluate({"extra": name})}

    assert plain == {"httpx", "pydantic"}
    assert extra("temporal") == {"temporalio"}
    assert extra("keys") == {"cryptography"}
    assert packages == {"jobforge"}


def test_the_fresh_venv_has_the_sdk_and_no_server_package(sdk_python: Path, tmp_path: Path) -> None:
    probe = ("import importlib.util, json, jobforge; "
             "print(json.dumps({n: importlib.util.find_spec(n) is not None for n in "
             "('shared', 'workers', 'workflows', 'activities', 'fastapi', 'sqlalchemy', 'temporalio')}))")
    done = _run([str(sdk_python), "-c", probe], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == dict.fromkeys(
        ("shared", "workers", "workflows", "activities", "fastapi", "sqlalchemy", "temporalio"), False)
    # the public names an app imports
    names = _run([str(sdk_python), "-c", "from jobforge import JobForgeClient, RunRecord, EventEnvelope; "
                  "from jobforge.errors import typed_error, RunNotFound; "
                  "print(type(typed_error({'code': 'run_not_found', 'detail': 'x'})).__name__)"], cwd=tmp_path)
    assert names.stdout.strip() == "RunNotFound", names.stderr


@pytest.fixture(scope="module")
def stack(pg_url: str, temporal_env: WorkflowEnvironment,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """An API process and a worker process (the server's interpreter), a tenant and its key."""
    home = tmp_path_factory.mktemp("sdk-api-home")
    port = free_port()
    env = env_with({
        "JOBFORGE_TEMPORAL_ADDRESS": str(temporal_env.client.service_client.config.target_host),
        "JOBFORGE_DATABASE_URL": pg_url, "JOBFORGE_HOME": str(home),
        "JOBFORGE_TASK_QUEUE": f"sdk-e2e-{uuid.uuid4().hex[:8]}",
        "JOBFORGE_AUTOPILOT_JOBS_ENABLED": "1", "VERIFY_PACK_ENABLED": "1", "JOBFORGE_EVENTS_ENABLED": "1",
        "JOBFORGE_TRIGGERS_ENABLED": "1", "JOBFORGE_ACTION_JOBS_ENABLED": "1",
    })
    with api_and_worker(env, home, port, 60) as base:
        tenant = f"rl-{uuid.uuid4().hex[:6]}"
        assert jobforge("tenants", "create", tenant, env=env).returncode == 0
        keys = {}
        for example, scopes in {"readylayer_verify": "jobs:*,runs:read", **SCOPES}.items():
            made = jobforge("keys", "create", "--tenant", tenant, "--scopes", scopes, "--json", env=env)
            assert made.returncode == 0, made.stderr
            keys[example] = json.loads(made.stdout)["secret"]
        yield {"base": base, "tenant": tenant, "key": keys["readylayer_verify"], "keys": keys, "home": home,
               "temporal": env["JOBFORGE_TEMPORAL_ADDRESS"], "task_queue": env["JOBFORGE_TASK_QUEUE"]}


@pytest.fixture
def examples_dir(tmp_path: Path) -> Path:
    """The examples copied out of the checkout, so nothing of the server is importable next to them."""
    package = tmp_path / "examples" / "integrations"
    package.mkdir(parents=True)
    (tmp_path / "examples" / "__init__.py").touch()
    (package / "__init__.py").touch()
    for name in EXAMPLES:
        shutil.copy(ROOT / "examples" / "integrations" / name, package / name)
    return tmp_path


def test_the_readylayer_example_runs_from_the_fresh_venv(sdk_python: Path, stack: dict[str, Any],
                                                         examples_dir: Path) -> None:
    """ReadyLayer's example runs with the fresh venv's interpreter against the live API with the tenant's key."""
    tmp_path = examples_dir
    env = {**env_with({"JOBFORGE_API_URL": stack["base"], "JOBFORGE_API_KEY": stack["key"]})}
    done = _run([str(sdk_python), "-m", "examples.integrations.readylayer_verify",
                 str(ROOT / "examples" / "python-sample"), "--pack", "fast", "--tenant", stack["tenant"]],
                cwd=tmp_path, env=env)
    logs = (stack["home"] / "worker.log").read_text()[-3000:]
    assert done.returncode == 0, done.stdout + done.stderr + logs
    assert "run succeeded; verdict: passed" in done.stdout, done.stdout + logs
    # without the key's variables the example says what is missing
    bare = _run([str(sdk_python), "-m", "examples.integrations.readylayer_verify"], cwd=tmp_path,
                env=env_with({}))
    assert bare.returncode != 0 and "JOBFORGE_API_URL and JOBFORGE_API_KEY" in bare.stderr


async def test_the_temporal_transport_is_admitted_by_the_gate_inside_the_workflow(stack: dict[str, Any]) -> None:
    """jobforge.temporal starts the template with its typed argument and no receipt: admission on the worker
    runs the job for a known tenant and refuses an unknown one, whose error comes back typed."""
    sdk = await TemporalJobForgeClient.connect(stack["temporal"], task_queue=stack["task_queue"])
    handle = await sdk.request_job(stack["tenant"], "autopilot.jobforge.healthcheck", {}, actor="sdk-temporal")
    assert handle.workflow_id.startswith(f"jobforge/{stack['tenant']}/autopilot.jobforge.healthcheck/")
    result = await sdk.result(handle)
    assert isinstance(result, dict) and "healthy" in result
    refused = await sdk.request_job(f"nobody-{uuid.uuid4().hex[:6]}", "autopilot.jobforge.healthcheck", {})
    with pytest.raises(UnknownTenant):
        await sdk.result(refused)
    with pytest.raises(InvalidRequest):
        await sdk.request_job("Not A Tenant", "autopilot.jobforge.healthcheck")


@pytest.mark.parametrize(("example", "args", "expected"), [
    ("settler_contract_signed", (), ("trigger contract-signed-check: fire", "run succeeded: healthy=")),
    ("aias_agent_completed", (), ("dry run: would run",)),
    ("keys_rotation", ("--grace", "10"), ("read the run with it: succeeded", "revoked after 10s")),
])
def test_the_trigger_and_key_examples_run_from_the_fresh_venv(
        sdk_python: Path, stack: dict[str, Any], examples_dir: Path, example: str, args: tuple[str, ...],
        expected: tuple[str, ...]) -> None:
    """Settler's, AIAS's and Keys' examples run with the fresh venv's interpreter (the SDK and its `keys` extra,
    nothing of the server) against the live API, each with a key holding the scopes its docstring names."""
    env = env_with({"JOBFORGE_API_URL": stack["base"], "JOBFORGE_API_KEY": stack["keys"][example]})
    done = _run([str(sdk_python), "-m", f"examples.integrations.{example}", "--tenant", stack["tenant"], *args],
                cwd=examples_dir, env=env)
    logs = (stack["home"] / "worker.log").read_text()[-3000:]
    assert done.returncode == 0, done.stdout + done.stderr + logs
    for text in expected:
        assert text in done.stdout, done.stdout + logs
