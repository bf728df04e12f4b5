"""Toolchain detection: which command verifies each step, and why a step has none."""

from __future__ import annotations

import json

import pytest

from shared.errors import VerifyConfigInvalid
from shared.verify.detect import Host, RepoFacts, Request, plan
from shared.verify.models import Pack, StepName, Toolchain

HOST = Host(python="/py/bin/python", pip_python="/jf/bin/python", available=frozenset({"npm", "node", "git"}))
REQ = Request(env_dir="/envs/e1", dist_dir="/ws/dist")

PYPROJECT = """
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "demo"
version = "1"
dependencies = ["httpx>=0.27"]

[project.optional-dependencies]
test = ["pytest>=8"]
docs = ["mkdocs"]

[dependency-groups]
dev = ["ruff"]

[tool.ruff]
line-length = 100

[tool.mypy]
strict = true
"""


def facts(files: dict[str, str] | None = None, present: set[str] | None = None, entries: set[str] | None = None,
          packages: tuple[str, ...] = ()) -> RepoFacts:
    files = files or {}
    return RepoFacts(files=files, present=frozenset(present or set()),
                     root_entries=frozenset((entries or set()) | {n.split("/")[0] for n in files}),
                     python_packages=packages)


def commands(p: object) -> dict[str, str]:
    from shared.verify.models import Plan

    assert isinstance(p, Plan)
    return {s.name.value: s.display or f"skipped: {s.reason}" for s in p.steps}


def test_python_project_uses_ruff_mypy_build_and_pytest() -> None:
    """A pyproject with ruff, mypy, a build backend and tests/ gets all four steps and a venv install."""
    p = plan(facts({"pyproject.toml": PYPROJECT}, {"tests", "src"}), REQ, HOST)
    assert p.toolchain is Toolchain.PYTHON
    assert commands(p) == {
        "lint": "ruff check .", "typecheck": "mypy src",
        "build": "python -m build --no-isolation --outdir /ws/dist .", "test": "python -m pytest",
    }
    assert p.stages == [[StepName.LINT, StepName.TYPECHECK], [StepName.BUILD, StepName.TEST]]
    install = p.install.commands()
    assert install[0] == ["/py/bin/python", "-m", "venv", "--clear", "--without-pip", "/envs/e1"]
    pip = install[1]
    assert pip[:5] == ["/jf/bin/python", "-m", "pip", "--python", "/envs/e1/bin/python"]
    assert "-e" in pip and ".[test]" in pip and pip[pip.index("--group"):][:2] == ["--group", "dev"]
    assert {"ruff", "mypy", "pytest", "build", "hatchling"} <= set(pip)
    assert p.path_prefix == ["/envs/e1/bin"] and p.env_dir == "/envs/e1"


def test_mypy_targets_come_from_its_config_or_the_layout() -> None:
    """mypy runs bare when its config names files, else on src/, else on the flat-layout packages."""
    with_files = PYPROJECT.replace("strict = true", 'strict = true\nfiles = ["pkg"]')
    assert commands(plan(facts({"pyproject.toml": with_files}), REQ, HOST))["typecheck"] == "mypy"
    flat = plan(facts({"pyproject.toml": PYPROJECT}, packages=("alpha", "beta")), REQ, HOST)
    assert commands(flat)["typecheck"] == "mypy alpha beta"


def test_unconfigured_python_steps_are_skipped_with_reasons() -> None:
    """A requirements.txt-only script repo has no linter, type checker, build or tests: each says why."""
    p = plan(facts({}, {"requirements.txt"}, {"main.py", "requirements.txt"}), REQ, HOST)
    reasons = commands(p)
    assert reasons["lint"].startswith("skipped: no Python linter configured")
    assert reasons["typecheck"].startswith("skipped: no type checker configured")
    assert reasons["build"].startswith("skipped: no build configuration")
    assert reasons["test"].startswith("skipped: no tests found")
    assert p.stages == []
    pip = p.install.extra[0]
    assert pip[pip.index("-r"):pip.index("-r") + 2] == ["-r", "requirements.txt"]


def test_flake8_pyright_and_root_test_files_are_detected() -> None:
    """flake8 config, pyrightconfig.json and root-level test_*.py files are recognised."""
    p = plan(facts({"setup.cfg": "[flake8]\nmax-line-length = 99\n", "pyrightconfig.json": "{}"},
                   {"setup.py"}, {"setup.py", "test_main.py"}), REQ, HOST)
    assert commands(p)["lint"] == "flake8" and commands(p)["typecheck"] == "pyright"
    assert commands(p)["test"] == "python -m pytest" and commands(p)["build"].startswith("python -m build")


def test_uv_lock_uses_uv_when_installed_and_says_so_when_not() -> None:
    """uv.lock is honoured with uv sync when uv is on the worker; otherwise pip installs and a note says so."""
    f = facts({"pyproject.toml": PYPROJECT}, {"uv.lock", "tests"})
    with_uv = plan(f, REQ, Host(python="p", pip_python="p", available=frozenset({"uv"})))
    assert with_uv.install.extra[0][:3] == ["uv", "sync", "--frozen"]
    without = plan(f, REQ, HOST)
    assert "pip" in without.install.extra[0] and any("uv.lock" in n for n in without.notes)


def test_install_off_uses_the_repository_venv() -> None:
    """With options.install off, install is skipped and the repository's own .venv/bin leads PATH."""
    p = plan(facts({"pyproject.toml": PYPROJECT}, {".venv/bin/python"}),
             Request(install=False, env_dir="/e", dist_dir="/d"), HOST)
    assert not p.install.runnable and "options.install is off" in p.install.reason
    assert p.path_prefix == [".venv/bin"] and p.env_dir == ""


def node_facts(package: dict[str, object], present: set[str] | None = None) -> RepoFacts:
    return facts({"package.json": json.dumps(package)}, present)


def test_node_package_manager_and_scripts() -> None:
    """The lockfile picks the package manager; lint/typecheck/build/test come from package.json scripts."""
    package = {"scripts": {"lint": "eslint .", "typecheck": "tsc -p .", "build": "tsup", "test": "vitest run"},
               "devDependencies": {"eslint": "^9"}}
    p = plan(node_facts(package, {"pnpm-lock.yaml"}), REQ, HOST)
    assert p.toolchain is Toolchain.NODE and p.package_manager == "pnpm"
    assert commands(p) == {"lint": "pnpm run lint", "typecheck": "pnpm run typecheck", "build": "pnpm run build",
                           "test": "pnpm run test"}
    assert p.install.argv == ["pnpm", "install", "--frozen-lockfile"]
    assert p.stages == [[StepName.LINT, StepName.TYPECHECK], [StepName.BUILD], [StepName.TEST]]
    npm = plan(node_facts(package, {"package-lock.json"}), REQ, HOST)
    assert npm.install.argv[:2] == ["npm", "ci"]
    yarn = plan(node_facts({**package, "packageManager": "yarn@4.1.0"}), REQ, HOST)
    assert yarn.package_manager == "yarn"


def test_node_typecheck_falls_back_to_tsc_and_placeholder_tests_are_skipped() -> None:
    """tsconfig + typescript → tsc --noEmit; npm init's placeholder test script is not a test suite."""
    package = {"scripts": {"test": 'echo "Error: no test specified" && exit 1'},
               "devDependencies": {"typescript": "^5"}}
    p = plan(node_facts(package, {"tsconfig.json"}), REQ, HOST)
    assert commands(p)["typecheck"] == "tsc --noEmit"
    assert "placeholder" in commands(p)["test"]
    no_ts = plan(node_facts({"scripts": {}}, {"tsconfig.json"}), REQ, HOST)
    assert "typescript is not a dependency" in commands(no_ts)["typecheck"]
    assert "no dependencies" in no_ts.install.reason


def test_explicit_config_wins_and_is_validated() -> None:
    """.jobforge/verify.toml commands replace detection; unknown keys are a typed error naming the file."""
    config = 'lint = "make lint"\ntest = ["pytest", "-x"]\nbuild = false\norder = [["test"], ["lint"]]\n'
    p = plan(facts({".jobforge/verify.toml": config, "pyproject.toml": PYPROJECT}), REQ, HOST)
    assert p.toolchain is Toolchain.EXPLICIT and p.source == ".jobforge/verify.toml"
    assert p.step(StepName.LINT).argv == ["/bin/sh", "-c", "make lint"]
    assert p.step(StepName.TEST).argv == ["pytest", "-x"] and p.step(StepName.TEST).display == "pytest -x"
    assert "turned off" in p.step(StepName.BUILD).reason
    assert "no typecheck command" in p.step(StepName.TYPECHECK).reason
    assert p.stages == [[StepName.TEST], [StepName.LINT]]
    in_pyproject = PYPROJECT + '\n[tool.jobforge.verify]\ntest = "tox"\n'
    assert plan(facts({"pyproject.toml": in_pyproject}), REQ, HOST).step(StepName.TEST).display == "tox"
    with pytest.raises(VerifyConfigInvalid) as info:
        plan(facts({".jobforge/verify.toml": 'lnt = "x"\n'}), REQ, HOST)
    assert ".jobforge/verify.toml" in info.value.message and "lnt" in info.value.message


def test_broken_config_files_are_typed_errors() -> None:
    """Invalid TOML or JSON is reported as VerifyConfigInvalid, not a crash."""
    with pytest.raises(VerifyConfigInvalid):
        plan(facts({"pyproject.toml": "[project\n"}), REQ, HOST)
    with pytest.raises(VerifyConfigInvalid):
        plan(facts({"package.json": "{nope"}), REQ, HOST)


def test_pack_and_selection_skip_steps_with_reasons() -> None:
    """The fast pack drops test; options.steps keeps only what it names; nothing detected skips everything."""
    fast = plan(facts({"pyproject.toml": PYPROJECT}, {"tests"}), Request(pack=Pack.FAST, env_dir="/e"), HOST)
    assert "not part of the fast pack" in fast.step(StepName.TEST).reason
    only = plan(facts({"pyproject.toml": PYPROJECT}, {"tests"}),
                Request(selected=(StepName.TEST,), env_dir="/e"), HOST)
    assert [s.name for s in only.steps if s.runnable] == [StepName.TEST]
    full = plan(facts({"pyproject.toml": PYPROJECT}, {"tests"}), Request(env_dir="/e"), HOST)
    assert only.install == full.install == fast.install  # one environment serves every pack and selection
    nothing = plan(facts({"README.md": "hi"}), REQ, HOST)
    assert nothing.toolchain is Toolchain.NONE and all(not s.runnable for s in nothing.steps)


def test_requirement_files_are_found_by_name() -> None:
    """Every requirements*.txt at the root is installed (docs ones excepted), as are requirements/dev.txt and kin."""
    f = facts({}, {"requirements/test.txt"}, {"requirements.txt", "requirements-mypy.txt", "dev-requirements.txt",
                                             "requirements-docs.txt", "requirements.in", "setup.py"})
    pip = plan(f, REQ, HOST).install.extra[0]
    named = [pip[i + 1] for i, arg in enumerate(pip) if arg == "-r"]
    assert named == ["dev-requirements.txt", "requirements-mypy.txt", "requirements.txt", "requirements/test.txt"]
