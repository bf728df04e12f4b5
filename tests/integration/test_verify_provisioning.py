"""The verify pack's provisioning paths against the real registries: a locked uv sync, pre-commit hooks at
their pinned revs, a tox environment, pnpm and yarn berry at the version ``packageManager`` declares, and
the error verdict when a toolchain cannot be had.

Each test generates a small repository, runs the pack through real Temporal and PostgreSQL, and checks
the versions that ran (from the steps' own output), that the checkout was not written, and the verdict.
They need PyPI and the npm registry; without them they are skipped with the reason.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from activities.toolchains import Toolchains, npm_arch, uv_binary
from shared.flags import Flag
from shared.settings import Settings
from shared.verify.models import TEMPLATE_KEY, StepName, StepStatus, ToolRequest, Verdict, VerifyReport
from tests.support.tenants import ensure_tenants
from tests.support.verify_repos import TOXED_PYPROJECT, git_init, write_files
from workers.runtime import Runtime

pytestmark = pytest.mark.integration

SHARED_CACHE = Path(os.environ.get("JOBFORGE_TEST_VERIFY_CACHE", "/tmp/jobforge-test-verify-cache"))
PYPI = "https://pypi.org/simple/"
NPM = "https://registry.npmjs.org/"


def _reachable(url: str) -> bool:
    try:
        return httpx.head(url, timeout=10.0, follow_redirects=True).status_code < 500
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def pypi() -> None:
    if not _reachable(PYPI):
        pytest.skip(f"PyPI ({PYPI}) cannot be reached from here")


@pytest.fixture(scope="module")
def npm_registry() -> None:
    if not _reachable(NPM):
        pytest.skip(f"the npm registry ({NPM}) cannot be reached from here")


@pytest.fixture
def settings(settings: Settings, repos: Path) -> Settings:
    return settings.replace(verify_allowed_roots=[repos], verify_cache_dir=SHARED_CACHE)


@pytest.fixture
def verify_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(Flag.AUTOPILOT_JOBS.value, "1")
    monkeypatch.setenv(Flag.VERIFY_PACK.value, "1")


async def verify(rt: Runtime, inputs: dict[str, Any]) -> VerifyReport:
    await ensure_tenants(rt, "acme")
    handle = await rt.client().request_job("acme", TEMPLATE_KEY, {**inputs, "options": {"no_cache": True}},
                                           actor="test")
    report = await rt.client().result(handle)
    assert isinstance(report, VerifyReport)
    return report


def log_text(report: VerifyReport, step: StepName) -> str:
    ref = report.step(step).log
    assert ref is not None, report.step(step)
    return Path(ref.location).read_text()


def explain(report: VerifyReport) -> list[tuple[str, str, str, str, list[str]]]:
    return [(s.name.value, s.status.value, s.command, s.reason, s.tail[-5:]) for s in report.steps]


def listing(repo: Path) -> set[str]:
    return {p.relative_to(repo).as_posix() for p in repo.rglob("*") if ".git" not in p.parts}


async def test_uv_lock_is_synced_at_its_locked_versions(runtime: Runtime, worker: None, verify_on: None,
                                                        repos: Path, pypi: None) -> None:
    """A repository with uv.lock is installed by ``uv sync --locked`` with its groups: the tests run with the
    locked pytest (not the newest), in the run's environment, and the checkout gets no .venv."""
    repo = write_files(repos / "locked", {
        "pyproject.toml": """
            [project]
            name = "locked-fixture"
            version = "0.1.0"
            requires-python = ">=3.11"
            dependencies = []

            [dependency-groups]
            dev = ["pytest==8.3.3"]

            [tool.pytest.ini_options]
            testpaths = ["tests"]
        """,
        "tests/test_it.py": """
            import pytest


            def test_locked_pytest() -> None:
                assert pytest.__version__ == "8.3.3"
        """,
    })
    done = await asyncio.to_thread(subprocess.run, [uv_binary(), "lock", "--quiet"], cwd=repo, capture_output=True,
                                   text=True, timeout=300, check=False,
                                   env={**os.environ, "UV_CACHE_DIR": str(SHARED_CACHE / "test-uv")})
    assert done.returncode == 0, done.stderr
    git_init(repo)
    before = listing(repo)
    report = await verify(runtime, {"repo_path": str(repo)})
    assert report.passed, explain(report)
    install = report.step(StepName.INSTALL)
    assert "uv sync --locked --all-extras --group dev" in install.command and install.origin.startswith("uv.lock")
    assert "pytest-8.3.3" in log_text(report, StepName.TEST)
    assert listing(repo) == before, "the checkout was written to"


async def test_precommit_hooks_run_at_their_pinned_revs(runtime: Runtime, worker: None, verify_on: None,
                                                        repos: Path, pypi: None) -> None:
    """Hooks of a known repository run from the registry package at the rev's version (no clone of the hook
    repository); a hook of an unknown repository is named and left out; a lint error fails the lint step."""
    config = """
        repos:
          - repo: https://github.com/astral-sh/ruff-pre-commit
            rev: v0.6.9
            hooks:
              - id: ruff
              - id: ruff-format
          - repo: https://github.com/pre-commit/pre-commit-hooks
            rev: v4.6.0
            hooks:
              - id: end-of-file-fixer
          - repo: https://github.com/example-org/unpublished-hooks
            rev: v1.0.0
            hooks:
              - id: not-on-any-registry
          - repo: local
            hooks:
              - id: ruff-version
                name: ruff version
                entry: ruff --version
                language: python
                additional_dependencies: ["ruff==0.6.9"]
                pass_filenames: false
                verbose: true
    """
    repo = write_files(repos / "hooks", {
        ".pre-commit-config.yaml": config,
        "pyproject.toml": '[project]\nname = "hooks-fixture"\nversion = "0.1.0"\n',
        "hooks_fixture.py": "def f(x: int) -> int:\n    return x + 1\n",
    })
    git_init(repo)
    report = await verify(runtime, {"repo_path": str(repo)})
    lint = report.step(StepName.LINT)
    assert lint.status is StepStatus.PASSED, explain(report)
    assert lint.origin == ".pre-commit-config.yaml" and "SKIP=not-on-any-registry" in lint.command
    text = log_text(report, StepName.LINT)
    assert "ruff 0.6.9" in text and "Passed" in text
    assert any("not-on-any-registry not run" in note for note in report.notes), report.notes
    assert any("ruff==0.6.9" in note for note in report.notes), report.notes
    (repo / "hooks_fixture.py").write_text("import os\n\n\ndef f(x: int) -> int:\n    return x + 1\n")
    (repo / "notes.txt").write_text("no newline at the end")  # end-of-file-fixer rewrites it
    write_files(repo, {"tests/test_notes.py": """
        from pathlib import Path


        def test_the_checkout_as_committed() -> None:
            assert Path("notes.txt").read_text() == "no newline at the end"
    """})
    broken = await verify(runtime, {"repo_path": str(repo)})
    assert broken.step(StepName.LINT).status is StepStatus.FAILED and broken.verdict is Verdict.FAILED
    lint_log = log_text(broken, StepName.LINT)
    assert "F401" in lint_log and "Fixing notes.txt" in lint_log
    # the lint step's fixes stay in its own copy: the tests see the code as it was given, as a CI job would
    assert broken.step(StepName.TEST).status is StepStatus.PASSED, explain(broken)


async def test_code_newer_than_every_interpreter_here_is_an_error_naming_it(runtime: Runtime, worker: None,
                                                                           verify_on: None, repos: Path,
                                                                           pypi: None) -> None:
    """pre-commit's hooks run on the newest interpreter the worker has; code in a syntax newer than that (Python
    3.14's unparenthesised ``except A, B``), in a repository that declares 3.14, cannot be judged here: the
    verdict is ``error`` naming the interpreter, not ``failed``."""
    newest = Toolchains(SHARED_CACHE / "toolchains").host().interpreters[0][0]
    if tuple(int(p) for p in newest.split(".")[:2]) >= (3, 14):
        pytest.skip(f"this worker has Python {newest}, which parses 3.14 syntax")
    repo = write_files(repos / "newsyntax", {
        ".pre-commit-config.yaml": """
            repos:
              - repo: https://github.com/pre-commit/pre-commit-hooks
                rev: v5.0.0
                hooks:
                  - id: debug-statements
        """,
        "pyproject.toml": """
            [project]
            name = "newsyntax"
            version = "0.1.0"
            requires-python = ">=3.10"
            classifiers = ["Programming Language :: Python :: 3.14"]
        """,
        "newsyntax/__init__.py": "",
        "newsyntax/py314_only.py": "try:\n    pass\nexcept ValueError, TypeError:\n    pass\n",
    })
    git_init(repo)
    report = await verify(runtime, {"repo_path": str(repo), "pack": "fast"})
    lint = report.step(StepName.LINT)
    assert lint.status is StepStatus.ERROR and report.verdict is Verdict.ERROR, explain(report)
    assert f"Python {'.'.join(newest.split('.')[:2])}" in lint.reason and "declares Python 3.14" in lint.reason
    assert "py314_only.py" in log_text(report, StepName.LINT)


async def test_tox_environments_are_the_steps(runtime: Runtime, worker: None, verify_on: None, repos: Path,
                                              pypi: None) -> None:
    """tox's own environments run the lint and test steps (``tox -e lint``), built during install, with the
    tox release the configuration requires."""
    repo = write_files(repos / "toxed", {
        "tox.ini": """
            [tox]
            requires = tox>=4.20
            env_list = lint, py

            [testenv]
            deps = pytest==8.3.3
            commands = pytest

            [testenv:lint]
            skip_install = true
            deps =
            commands = python -c "import sys; print('lint env on', sys.version_info[:2])"
        """,
        "pyproject.toml": TOXED_PYPROJECT,
        "toxed.py": "def three() -> int:\n    return 3\n",
        "tests/test_toxed.py": "from toxed import three\n\n\ndef test_three() -> None:\n    assert three() == 3\n",
    })
    git_init(repo)
    report = await verify(runtime, {"repo_path": str(repo), "pack": "full"})
    assert report.passed, explain(report)
    assert report.step(StepName.LINT).command == "tox -e lint --skip-pkg-install"
    assert report.step(StepName.TEST).command == "tox -e py --skip-pkg-install"
    assert report.step(StepName.TEST).origin == "tox.ini env py"
    assert "lint env on" in log_text(report, StepName.LINT)
    assert "pytest-8.3.3" in log_text(report, StepName.TEST)
    tox = next(t for t in report.toolchains if t.name == "tox")
    assert int(tox.version.split(".")[0]) >= 4


async def test_pnpm_runs_at_the_declared_version(runtime: Runtime, worker: None, verify_on: None, repos: Path,
                                                 npm_registry: None) -> None:
    """``packageManager: pnpm@9.12.3`` brings that pnpm from the npm registry (none is on the worker's PATH);
    it installs into the run's copy and runs the scripts; the checkout gets no node_modules or lockfile."""
    package = {"name": "pnpm-fixture", "version": "1.0.0", "private": True, "packageManager": "pnpm@9.12.3",
               "dependencies": {"is-number": "7.0.0"},
               "scripts": {"test": "pnpm --version && node -e \"require('is-number')\""}}
    repo = write_files(repos / "pnpmrepo", {"package.json": json.dumps(package, indent=2) + "\n"})
    git_init(repo)
    before = listing(repo)
    report = await verify(runtime, {"repo_path": str(repo)})
    assert report.passed, explain(report)
    assert report.step(StepName.INSTALL).command == "pnpm install"
    assert any(t.name == "pnpm" and t.version == "9.12.3" for t in report.toolchains), report.toolchains
    assert "9.12.3" in log_text(report, StepName.TEST)
    assert listing(repo) == before, "the checkout was written to"


async def test_npm_without_a_lockfile_writes_none(runtime: Runtime, worker: None, verify_on: None, repos: Path,
                                                  npm_registry: None) -> None:
    """Without a lockfile npm installs with ``--no-package-lock`` in the run's copy: no package-lock.json (which
    would turn the next run into ``npm ci``) or node_modules appears in the checkout."""
    package = {"name": "npm-fixture", "version": "1.0.0", "private": True, "dependencies": {"is-number": "7.0.0"},
               "scripts": {"test": "node -e \"require('is-number'); console.log('npm', process.env.CI)\""}}
    repo = write_files(repos / "npmrepo", {"package.json": json.dumps(package, indent=2) + "\n"})
    git_init(repo)
    before = listing(repo)
    report = await verify(runtime, {"repo_path": str(repo)})
    assert report.passed, explain(report)
    assert report.step(StepName.INSTALL).command == "npm install --no-package-lock"
    assert "npm true" in log_text(report, StepName.TEST)  # CI=true, as CI services set it
    assert listing(repo) == before, "the checkout was written to"
    again = await verify(runtime, {"repo_path": str(repo)})
    assert again.step(StepName.INSTALL).command == "npm install --no-package-lock"


async def test_yarn_berry_runs_at_the_declared_version(runtime: Runtime, worker: None, verify_on: None,
                                                       repos: Path, settings: Settings,
                                                       npm_registry: None) -> None:
    """Yarn 4 (``packageManager: yarn@4.5.0``, a berry lockfile) is provisioned from the npm registry and
    installs with ``--immutable`` as CI does; its scripts run with that yarn."""
    package = {"name": "berry-fixture", "version": "1.0.0", "private": True, "packageManager": "yarn@4.5.0",
               "dependencies": {"is-number": "7.0.0"},
               "scripts": {"test": "yarn --version && node -e \"require('is-number')\""}}
    repo = write_files(repos / "berry", {"package.json": json.dumps(package, indent=2) + "\n",
                                         ".yarnrc.yml": "nodeLinker: node-modules\n"})
    # the lockfile, made as a developer makes it: the same yarn, provisioned by JobForge's own code path
    toolchains = Toolchains(SHARED_CACHE / "toolchains")
    [yarn] = await toolchains.provision(
        [ToolRequest(kind="npm", name="@yarnpkg/cli-dist", version="4.5.0", why="test")], "", lambda _: None)
    env = {k: v for k, v in os.environ.items() if k != "CI"}  # registry settings (CA bundle, proxy) included
    env.update({"PATH": f"{yarn.bin_dir}:{os.environ['PATH']}", "HOME": str(repos), "YARN_ENABLE_TELEMETRY": "0",
                "YARN_GLOBAL_FOLDER": str(SHARED_CACHE / "test-yarn"), "YARN_ENABLE_GLOBAL_CACHE": "true"})
    done = await asyncio.to_thread(subprocess.run, ["yarn", "install"], cwd=repo, env=env, capture_output=True,
                                   text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    for leftover in ("node_modules", ".yarn"):
        await asyncio.to_thread(subprocess.run, ["rm", "-rf", str(repo / leftover)], check=True)
    (repo / ".gitignore").write_text(".yarn/\n.pnp.*\n")
    git_init(repo)
    before = listing(repo)
    report = await verify(runtime, {"repo_path": str(repo)})
    assert report.passed, explain(report)
    assert report.step(StepName.INSTALL).command == "yarn install --immutable"
    assert any(t.name == "@yarnpkg/cli-dist" and t.version == "4.5.0" for t in report.toolchains)
    assert "4.5.0" in log_text(report, StepName.TEST)
    assert listing(repo) == before, "the checkout was written to"


async def test_bun_runs_at_the_declared_version(runtime: Runtime, worker: None, verify_on: None, repos: Path,
                                                npm_registry: None) -> None:
    """``packageManager: bun@1.2.23`` brings bun from the npm registry (its platform package, which carries the
    binary: nothing is downloaded from elsewhere); it installs with ``--frozen-lockfile`` against the
    repository's bun.lock in the run's copy and runs the scripts; the checkout is not written."""
    package = {"name": "bun-fixture", "version": "1.0.0", "private": True, "packageManager": "bun@1.2.23",
               "dependencies": {"is-number": "7.0.0"},
               "scripts": {"test": "bun --version && bun -e \"require('is-number'); console.log('bun ok')\""}}
    repo = write_files(repos / "bunrepo", {"package.json": json.dumps(package, indent=2) + "\n"})
    # the lockfile, made as a developer makes it: the same bun, provisioned by JobForge's own code path
    toolchains = Toolchains(SHARED_CACHE / "toolchains")
    [bun] = await toolchains.provision(
        [ToolRequest(kind="npm", name=f"@oven/bun-linux-{npm_arch()}", version="1.2.23", why="test")], "",
        lambda _: None)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env.update({"HOME": str(repos), "BUN_INSTALL_CACHE_DIR": str(SHARED_CACHE / "test-bun")})
    done = await asyncio.to_thread(subprocess.run, [str(Path(bun.bin_dir) / "bun"), "install"], cwd=repo, env=env,
                                   capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (repo / "bun.lock").is_file()
    await asyncio.to_thread(subprocess.run, ["rm", "-rf", str(repo / "node_modules")], check=True)
    git_init(repo)
    before = listing(repo)
    report = await verify(runtime, {"repo_path": str(repo)})
    assert report.passed, explain(report)
    assert report.step(StepName.INSTALL).command == "bun install --frozen-lockfile"
    assert any(t.name.startswith("@oven/bun-linux-") and t.version == "1.2.23" for t in report.toolchains)
    text = log_text(report, StepName.TEST)
    assert "1.2.23" in text and "bun ok" in text
    assert listing(repo) == before, "the checkout was written to"


async def test_a_toolchain_that_cannot_be_had_is_an_error_naming_it(runtime: Runtime, worker: None, verify_on: None,
                                                                     repos: Path, npm_registry: None) -> None:
    """A package manager version that is on no registry makes the verdict ``error`` (JobForge could not
    judge the repository), naming the toolchain; no step is reported failed."""
    package = {"name": "nopnpm", "version": "1.0.0", "private": True, "packageManager": "pnpm@0.0.1-nonexistent",
               "dependencies": {"is-number": "7.0.0"}, "scripts": {"test": "true"}}
    repo = write_files(repos / "nopnpm", {"package.json": json.dumps(package) + "\n"})
    report = await verify(runtime, {"repo_path": str(repo)})
    assert report.verdict is Verdict.ERROR and not report.passed, explain(report)
    assert "pnpm" in report.error and "0.0.1-nonexistent" in report.error, report.error
    assert report.step(StepName.INSTALL).status is StepStatus.ERROR
    assert not any(s.status is StepStatus.FAILED for s in report.steps)
